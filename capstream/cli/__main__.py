"""``python -m capstream.cli``."""

from capstream.cli import main

if __name__ == "__main__":
    main()
