"""Moved to tests/support/data.py; this name stays for the tests that import it."""

from support.data import *  # noqa: F401,F403
from support.data import (  # noqa: F401 - the names tests import, explicitly
    CIFAR10_CLASSES, CIFAR100_COARSE, CIFAR100_FINE, encode_dict, fine_to_coarse, make_tar_gz, md5_of, random_rows,
    rows_to_images, write_batch, write_cifar10, write_cifar100, write_malicious_pickle, write_pickle,
    write_tar_gz_members,
)
