"""train.py: the same command as `dream-train` (dream_keras/cli/train.py); see README."""
from dream_keras.cli.train import main

if __name__ == "__main__":
    main()
