"""predict.py: the same command as `dream-predict` (dream_keras/cli/predict.py); see README."""
from dream_keras.cli.predict import main

if __name__ == "__main__":
    main()
