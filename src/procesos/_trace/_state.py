"""Whether this process records a trace: the one global that every hook reads.

Kept free of imports, so that the modules with hooks (processes, the engine)
pay nothing for them: ``_state.recorder is None`` when tracing is off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._recorder import Recorder

recorder: Recorder | None = None
