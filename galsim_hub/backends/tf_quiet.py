"""Import TensorFlow without its start-up noise on machines without a GPU driver.

On a CPU-only machine TensorFlow's C++ start-up writes lines such as ``I0000 ...
cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.`` and
``E0000 ... cuda_platform.cc:52] failed call to cuInit: ...`` straight to file descriptor 2,
before ``TF_CPP_MIN_LOG_LEVEL`` (which `galsim_hub` sets to 2 unless the user set it) or
absl's logging is in effect. `import_tensorflow` captures descriptor 2 while TensorFlow is
imported and its GPUs listed, then writes back every line except these: the absl
preamble, the "Could not find cuda drivers" notice, the "oneDNN custom operations are on"
notice (informational: it says results may differ by round-off), and the ``failed call to cuInit`` error
*only when* TensorFlow said in the same start-up that no driver is installed (with a driver
present, that error explains a missing GPU and is kept). Every other line passes through.
"""

from __future__ import annotations

import os
import re
import sys
import threading

__all__ = ["import_tensorflow", "filter_startup_lines"]

_PREAMBLE = re.compile(
    rb"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR\s*$"
)
_NO_DRIVER = re.compile(rb"^I\d{4} [^\]]*cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine")
_CUINIT = re.compile(rb"^E\d{4} [^\]]*\] failed call to cuInit")
_ONEDNN = re.compile(rb"^I\d{4} [^\]]*\] oneDNN custom operations are on")
_module = None


def filter_startup_lines(text: bytes) -> bytes:
    """Drop TensorFlow's benign CPU-only start-up lines from captured stderr; keep all others."""
    lines = text.splitlines(keepends=True)
    no_driver = any(_NO_DRIVER.match(line) for line in lines)
    kept = [
        line
        for line in lines
        if not (
            _PREAMBLE.match(line)
            or _NO_DRIVER.match(line)
            or _ONEDNN.match(line)
            or (no_driver and _CUINIT.match(line))
        )
    ]
    return b"".join(kept)


def _capture_fd2(action):
    """Run ``action()`` with descriptor 2 captured; write the filtered capture back; return its result."""
    sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: os.read(read_end, 65536), b"")), daemon=True)
    reader.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        return action()
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the reader sees the end
        reader.join(timeout=10)
        os.close(read_end)
        os.write(saved, filter_startup_lines(b"".join(chunks)))
        os.close(saved)


def import_tensorflow():
    """The ``tensorflow`` module, imported (once) with the start-up lines filtered.

    When TensorFlow is already imported (by the user or an earlier call) it is returned as is.
    """
    global _module
    if _module is None:
        if "tensorflow" in sys.modules:
            _module = sys.modules["tensorflow"]
        else:

            def start():
                import tensorflow as tf

                tf.config.list_physical_devices("GPU")  # the cuInit call happens here
                return tf

            _module = _capture_fd2(start)
    return _module
