"""`python -m grader.batch JOB.json`: the same as `python -m grader.batch.job JOB.json`."""

import sys

from grader.batch.job import main

sys.exit(main(prog="python -m grader.batch"))
