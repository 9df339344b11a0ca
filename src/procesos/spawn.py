"""``multiprocessing.spawn``: what a program may call of it.

``freeze_support`` does nothing that procesos needs (its children never run
the parent's ``__main__``); ``set_executable``/``get_executable`` choose the
interpreter procesos' ``spawn`` method and the zygote start.
"""

from multiprocessing.spawn import freeze_support, get_executable, set_executable

__all__ = ["freeze_support", "get_executable", "set_executable"]
