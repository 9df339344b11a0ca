"""File descriptors that a child receives from its parent by position.

``multiprocessing`` pickles a connection or an arena as ``popen.DupFd(
popen.duplicate_for_child(fd))``. For ``spawn`` and ``zygote`` the popen records
the descriptor and returns its position in the list the child will receive;
:class:`InheritedFd` turns that position back into the child's descriptor.
"""

from __future__ import annotations

__all__ = ["InheritedFd", "install_inherited_fds"]

_inherited: list[int] = []


def install_inherited_fds(fds: list[int]) -> None:
    """In a child: record the descriptors received from the parent, in order."""
    _inherited[:] = fds


class InheritedFd:
    """A descriptor, by its position in the list sent to the child."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def detach(self) -> int:
        """The descriptor in this (child) process."""
        return _inherited[self.index]

    def __reduce__(self) -> tuple[type[InheritedFd], tuple[int]]:
        return (InheritedFd, (self.index,))
