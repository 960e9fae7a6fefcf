"""`python -m service`, the same command line as `loraplex`."""

from service.cli import main

if __name__ == "__main__":
    main()
