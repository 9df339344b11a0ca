"""The engine's wire format: frames come out of a pipe exactly as they went in."""

from __future__ import annotations

import os
import random
import select
import threading

import pytest

from procesos._engine._messages import FrameReader, frame
from procesos._engine._states import DONE, RUN

pytestmark = pytest.mark.timeout(60)

# Payload sizes around what matters: empty, small, one read (64 KiB), a pipe (256 KiB).
_SIZES = [0, 1, 5, 100, 5000, 65535, 65536, 70000, 300000]
# Write sizes that split the 12-byte prefix, frames and reads everywhere.
_PIECES = [1, 3, 11, 12, 13, 100, 4096, 65536, 200000]


def _messages(rng: random.Random) -> list[tuple[tuple[object, ...], bytes]]:
    return [((DONE, i, 0, 1, ((0, b"error"),) if i % 7 == 0 else (), i * 1000), rng.randbytes(
        rng.choice(_SIZES))) if i % 2 else ((RUN, i, i, 2, True, False, ((i, None),)),
                                            rng.randbytes(rng.choice(_SIZES)))
            for i in range(60)]


@pytest.mark.parametrize("mode", ["blocking", "available"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_frames_written_in_any_pieces_are_read_whole_and_in_order(mode: str, seed: int) -> None:
    rng = random.Random(seed)
    sent = _messages(rng)
    stream = b"".join(b"".join(frame(header, payload)) for header, payload in sent)
    read_fd, write_fd = os.pipe()

    def write() -> None:
        pieces = random.Random(seed)
        pos = 0
        while pos < len(stream):
            pos += os.write(write_fd, stream[pos:pos + pieces.choice(_PIECES)])
        os.close(write_fd)

    writer = threading.Thread(target=write)
    writer.start()
    reader = FrameReader(read_fd)
    received: list[tuple[object, bytes]] = []
    try:
        if mode == "blocking":
            with pytest.raises(EOFError):
                while True:
                    received += [(h, bytes(p)) for h, p in reader.read_blocking()]
        else:
            os.set_blocking(read_fd, False)
            eof = False
            while not eof:
                select.select([read_fd], [], [])
                frames, eof = reader.read_available()
                received += [(h, bytes(p)) for h, p in frames]
    finally:
        writer.join()
        os.close(read_fd)
    assert received == sent
