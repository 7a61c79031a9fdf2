"""ensemble.py: the same command as `dream-ensemble` (dream_keras/cli/ensemble.py)."""
from dream_keras.cli.ensemble import main

if __name__ == "__main__":
    main()
