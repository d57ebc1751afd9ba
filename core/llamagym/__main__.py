"""`python -m llamagym ...` runs the command line, so launchers can start it: `accelerate launch -m llamagym run`."""

from llamagym.cli import main

if __name__ == "__main__":
    main()
