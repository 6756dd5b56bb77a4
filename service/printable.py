"""Text from anyone (a payload, an error message, a caught mail, a request's path) made safe to
print on a terminal or in a text log line.

A terminal acts on control characters: an escape sequence can retitle the window, clear the
screen or forge a hyperlink, and a line break forges a second log line. `printable` shows each
as an escape (`\\x1b`) instead, so the reader sees what was there and nothing acts on it.
"""

import re

# C0, DEL and C1: what a terminal may act on.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# The same in lines of text, whose line breaks (LF, CRLF) and tabs are kept: a lone CR, which
# returns the cursor to overwrite a line, is not.
_CONTROL_IN_LINES = re.compile(r"\r(?!\n)|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def printable(text: str, lines: bool = False) -> str:
    """`text` with its control characters escaped as `\\x1b`; with `lines`, its line breaks
    and tabs kept."""
    control = _CONTROL_IN_LINES if lines else _CONTROL
    return control.sub(lambda found: f"\\x{ord(found.group()):02x}", text)
