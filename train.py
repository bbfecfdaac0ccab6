"""Train a detector with UMOP: `python train.py [cfg=EXPERIMENT.yaml] [key=value ...]` (see `umop train`)."""

import sys

from umop_yolo.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
