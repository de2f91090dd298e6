"""The one exception type for problems a user can cause and fix.

Everything else that goes wrong is a bug and may raise whatever it raises. The CLI turns a
`QsnnError` into a single line on stderr and exit code 2.
"""


class QsnnError(Exception):
    """Bad input: the message names the file, layer or field, and says how to fix it."""
