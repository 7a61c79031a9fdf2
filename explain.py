"""explain.py: the same command as `dream-explain` (dream_keras/cli/explain.py); see docs/explain.md."""
from dream_keras.cli.explain import main

if __name__ == "__main__":
    main()
