"""evaluate.py: the same command as `dream-evaluate` (dream_keras/cli/evaluate.py); see README."""
from dream_keras.cli.evaluate import main

if __name__ == "__main__":
    main()
