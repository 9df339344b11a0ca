"""``multiprocessing.util``: the standard library's (logging, finalizers, fork hooks).

procesos' processes run its finalizers and after-fork hooks as the standard
library's do.
"""

from multiprocessing.util import (
    SUBDEBUG,
    SUBWARNING,
    Finalize,
    ForkAwareLocal,
    ForkAwareThreadLock,
    close_all_fds_except,
    debug,
    get_logger,
    get_temp_dir,
    info,
    is_exiting,
    log_to_stderr,
    register_after_fork,
    sub_debug,
    sub_warning,
)

__all__ = [
    "SUBDEBUG",
    "SUBWARNING",
    "Finalize",
    "ForkAwareLocal",
    "ForkAwareThreadLock",
    "close_all_fds_except",
    "debug",
    "get_logger",
    "get_temp_dir",
    "info",
    "is_exiting",
    "log_to_stderr",
    "register_after_fork",
    "sub_debug",
    "sub_warning",
]
