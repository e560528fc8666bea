"""MODULE: pynode loads no Redis modules (they are native code for
redis-server), so MODULE LIST is empty and LOAD/LOADEX fail the way a module
that cannot be opened fails in Redis 7.0, after the same
enable-module-command check."""

from __future__ import annotations

from pynode.commands import CommandError, command
from pynode.commands.server import _help, _is_local

MODULE_NOT_ALLOWED = ("ERR MODULE command not allowed. If the enable-module-command option is "
                      "set to \"local\", you can run it from a local connection, otherwise you "
                      "need to set this option in the configuration file, and then restart the "
                      "server.")

MODULE_HELP = [
    "LIST",
    "    Return a list of loaded modules.",
    "LOAD <path> [<arg> ...]",
    "    Load a module library from <path>, passing to it any optional arguments.",
    "LOADEX <path> [[CONFIG NAME VALUE] [CONFIG NAME VALUE]] [ARGS ...]",
    "    Load a module library from <path>, while passing it module configurations and "
    "optional arguments.",
    "UNLOAD <name>",
    "    Unload a module.",
]


def _allowed(c) -> None:
    v = c.srv.cfg.get("enable-module-command")
    if not (v == "yes" or (v == "local" and _is_local(c))):
        raise CommandError(MODULE_NOT_ALLOWED)


@command("module|help")
def module_help(c, argv):
    return _help("MODULE", MODULE_HELP)


@command("module|list")
def module_list(c, argv):
    return b"*0\r\n"


@command("module|load", "module|loadex")
def module_load(c, argv):
    _allowed(c)
    c.srv.log.warning("Module %s failed to load: pynode does not load Redis modules"
                      % argv[2].decode("utf-8", "replace"))
    raise CommandError("ERR Error loading the extension. Please check the server logs.")


@command("module|unload")
def module_unload(c, argv):
    _allowed(c)
    raise CommandError("ERR Error unloading module: no such module with that name")
