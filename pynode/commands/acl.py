"""ACL commands (SETUSER GETUSER DELUSER LIST USERS CAT WHOAMI GENPASS LOG
DRYRUN SAVE LOAD HELP) and the permission check the dispatcher, EXEC and
scripts run for a client whose user is restricted (pynode/acl.py holds the
rules)."""

from __future__ import annotations

import os
import time

from pynode import acl as aclmod
from pynode.commands import CommandError, command, parse_int
from pynode.keyspecs import command_keys, has_keys
from pynode.resp import OK, Double, Map, SetReply, bulk, encode, integer

NOPERM_CMD = "NOPERM this user has no permissions to run the '%s' command"
NOPERM_KEY = "NOPERM this user has no permissions to access one of the keys used as arguments"
NOPERM_CHANNEL = ("NOPERM this user has no permissions to access one of the channels used "
                  "as arguments")
EXEC_REASONS = {aclmod.DENIED_CMD: "no permission to execute the command or subcommand",
                aclmod.DENIED_KEY: "no permission to touch the specified keys",
                aclmod.DENIED_CHANNEL: "no permission to access one of the channels used "
                                       "as arguments"}
SCRIPT_REASONS = {
    aclmod.DENIED_CMD: "ERR The user executing the script can't run this command or "
                       "subcommand",
    aclmod.DENIED_KEY: "ERR The user executing the script can't access at least one of the "
                       "keys mentioned in the command arguments",
    aclmod.DENIED_CHANNEL: "ERR The user executing the script can't publish to the channel "
                           "mentioned in the command"}
NO_ACLFILE = ("ERR This Redis instance is not configured to use an ACL file. You may want to "
              "specify users via the ACL SETUSER command and then issue a CONFIG REWRITE "
              "(assuming you have a Redis configuration file set) in order to store users in "
              "the Redis configuration.")
HELP = [
    "CAT [<category>]",
    "    List all commands that belong to <category>, or all command categories",
    "    when no category is specified.",
    "DELUSER <username> [<username> ...]",
    "    Delete a list of users.",
    "DRYRUN <username> <command> [<arg> ...]",
    "    Returns whether the user can execute the given command without executing the command.",
    "GETUSER <username>",
    "    Get the user's details.",
    "GENPASS [<bits>]",
    "    Generate a secure 256-bit user password. The optional `bits` argument can",
    "    be used to specify a different size.",
    "LIST",
    "    Show users details in config file format.",
    "LOAD",
    "    Reload users from the ACL file.",
    "LOG [<count> | RESET]",
    "    Show the ACL log entries.",
    "SAVE",
    "    Save the current config to the ACL file.",
    "SETUSER <username> <attribute> [<attribute> ...]",
    "    Create or modify a user with the specified attributes.",
    "USERS",
    "    List all the registered usernames.",
    "WHOAMI",
    "    Return the current connection username.",
]


def _s(b: bytes) -> str:
    return b.decode("utf-8", "replace")


# ---------------------------------------------------------------- checks
def check_user(user, cmd, argv: list[bytes]) -> tuple[int, int]:
    """ACLCheckAllUserCommandPerm for a pynode Command."""
    ids = aclmod.CATALOG.ids
    cid = ids.get(cmd.name)
    if cid is None:                 # a subcommand COMMAND does not list: its container's rule
        cid = ids[cmd.parent.name]
    finder = (lambda: command_keys(cmd, argv)) if has_keys(cmd) else None
    return user.check(cid, cmd.noauth, argv, finder, aclmod.CHANNEL_CMDS.get(cmd.name))


def log_denial(srv, c, result: int, context: str, cmd, argv, idx: int,
               running: str | None = None) -> None:
    """addACLLogEntry for a command, key or channel denial; the client info
    shows the command the client runs (`running`: a script's EVAL/FCALL)."""
    obj = cmd.name.encode() if result == aclmod.DENIED_CMD else argv[idx]
    srv.acl.add_log(result, context, obj, c.user.name, int(time.time() * 1000),
                    client_info(c, running or cmd.name))


def client_info(c, cmdname: str | None = None) -> str:
    from pynode.commands.client import client_line
    return client_line(c, c, cmdname)


def _debug_allowed(c) -> bool:
    from pynode.commands.server import _is_local
    mode = c.srv.debug_enabled
    return mode == "yes" or (mode == "local" and _is_local(c))


def _checked(srv, c, cmd, argv, context: str, running: str | None = None) -> int:
    """Check c's user; a denial is logged (ACL LOG) with `context`."""
    result, idx = check_user(c.user, cmd, argv)
    if result != aclmod.OK:
        log_denial(srv, c, result, context, cmd, argv, idx, running)
    return result


def denied(srv, c, cmd, argv) -> str | None:
    """The dispatcher's check (processCommand): the NOPERM text or None.
    A DEBUG that enable-debug-command refuses gets that refusal first."""
    if cmd.name == "debug" and not _debug_allowed(c):
        return None
    result = _checked(srv, c, cmd, argv, "multi" if c.in_multi else "toplevel")
    if result == aclmod.OK:
        return None
    if result == aclmod.DENIED_CMD:
        return NOPERM_CMD % cmd.name
    if result == aclmod.DENIED_KEY:
        return NOPERM_KEY
    return NOPERM_CHANNEL


def exec_denied(srv, c, cmd, argv) -> str | None:
    """EXEC checks every queued command again: rules may have changed."""
    if c.user.unrestricted:
        return None
    result = _checked(srv, c, cmd, argv, "multi")
    if result == aclmod.OK:
        return None
    return ("NOPERM ACLs rules changed between the moment the transaction was accumulated "
            "and the EXEC call. This command is no longer allowed for the following reason: "
            "%s" % EXEC_REASONS[result])


def script_denied(srv, caller, cmd, argv, running: str) -> str | None:
    """scriptVerifyACL: redis.call runs with the calling client's user
    (`running`: the caller's EVAL or FCALL)."""
    if caller.user.unrestricted:
        return None
    result = _checked(srv, caller, cmd, argv, "lua", running)
    return None if result == aclmod.OK else SCRIPT_REASONS[result]


def auth_failed(c, argv0: bytes, username: bytes) -> None:
    srv = c.srv
    srv.acl.add_log(aclmod.DENIED_AUTH, "multi" if c.in_multi else "toplevel", argv0,
                    username, int(time.time() * 1000),
                    client_info(c, argv0.decode("utf-8", "replace").lower()))


def authenticate(c, username: bytes, password: bytes) -> bool:
    """ACLAuthenticateUser: on success the client is this user's."""
    u = c.srv.acl.authenticate(username, password)
    if u is None:
        return False
    c.authed = True
    c.user = u
    c.update_special()
    return True


def _kill(c, x) -> None:
    from pynode.commands.client import _kill as kill
    kill(c, x)


def refresh_clients(srv) -> None:
    """Rules changed: every client's slow-path flag follows its user."""
    for x in srv.clients.values():
        x.update_special()


def disconnect_user_clients(srv, c, users) -> None:
    """ACLFreeUserAndKillClients: the users' clients go back to the default
    user unauthenticated and are closed (the caller after its reply)."""
    gone = {id(u) for u in users}
    for x in list(srv.clients.values()):
        if id(x.user) in gone:
            x.user = srv.acl.default
            x.authed = False
            x.update_special()
            _kill(c, x)


def _kill_pubsub_if_needed(srv, new, original) -> None:
    """ACLKillPubsubClientsIfNeeded: subscribers whose channels the new rules
    no longer allow are disconnected."""
    if any(s.flags & aclmod.ALLCHANNELS for s in new.selectors):
        return
    upcoming = [ch for s in new.selectors for ch in s.channels]
    if all(ch in upcoming for s in original.selectors for ch in s.channels):
        return
    sel = aclmod.Selector()
    sel.channels = upcoming
    for x in list(srv.clients.values()):
        if x.user is not original or not (x.subs or x.psubs or getattr(x, "ssubs", None)):
            continue
        kill = any(not sel.check_channel(p, True) for p in x.psubs)
        if not kill:
            kill = any(not sel.check_channel(ch, False)
                       for ch in list(x.subs) + list(getattr(x, "ssubs", None) or ()))
        if kill:
            _kill(None, x)


# ---------------------------------------------------------------- commands
@command("acl|setuser")
def acl_setuser(c, argv):
    srv = c.srv
    name = argv[2]
    if aclmod.has_spaces(name):
        raise CommandError("ERR Usernames can't contain spaces or null characters")
    ops, bad = aclmod.merge_selector_args(argv[3:])
    if ops is None:
        raise CommandError("ERR Unmatched parenthesis in acl selector starting at '%s'."
                           % _s(argv[3 + bad]))
    try:
        old, temp = srv.acl.setuser(name, ops)
    except aclmod.AclError as e:
        raise CommandError("ERR Error in ACL SETUSER modifier '%s': %s" % (_s(e.op), e.msg))
    if old is not None:
        _kill_pubsub_if_needed(srv, temp, old)
    srv.acl.commit(name, old, temp)
    refresh_clients(srv)
    return OK


@command("acl|deluser")
def acl_deluser(c, argv):
    srv = c.srv
    if any(n == b"default" for n in argv[2:]):
        raise CommandError("ERR The 'default' user cannot be removed")
    gone = []
    for n in argv[2:]:
        u = srv.acl.users.pop(n, None)
        if u is not None:
            gone.append(u)
    disconnect_user_clients(srv, c, gone)
    return integer(len(gone))


def _selector_fields(s) -> list:
    keys = "~*" if s.flags & aclmod.ALLKEYS else " ".join(s.key_patterns())
    if s.flags & aclmod.ALLCHANNELS:
        chans = "&*"
    else:
        chans = " ".join("&" + _s(ch) for ch in s.channels)
    return [b"commands", s.command_rules().encode(), b"keys", keys.encode(),
            b"channels", chans.encode()]


@command("acl|getuser")
def acl_getuser(c, argv):
    u = c.srv.acl.get(argv[2])
    if u is None:
        return c.nil
    fields = [b"flags", SetReply([n.encode() for f, n in aclmod.USER_FLAGS if u.flags & f]),
              b"passwords", [p.encode() for p in u.passwords]]
    fields += _selector_fields(u.root)
    sels = []
    for s in u.selectors[1:]:
        f = _selector_fields(s)
        sels.append(Map(zip(f[::2], f[1::2])))
    fields += [b"selectors", sels]
    return encode(Map(zip(fields[::2], fields[1::2])), c.resp)


@command("acl|list")
def acl_list(c, argv):
    return encode([b"user " + u.name + b" " + u.describe().encode("utf-8", "surrogateescape")
                   for u in c.srv.acl.sorted_users()], c.resp)


@command("acl|users")
def acl_users(c, argv):
    return encode([u.name for u in c.srv.acl.sorted_users()], c.resp)


@command("acl|whoami")
def acl_whoami(c, argv):
    return bulk(c.user.name)


def _syntax(argv) -> CommandError:
    return CommandError("ERR unknown subcommand or wrong number of arguments for '%s'. "
                        "Try ACL HELP." % _s(argv[1])[:128])


@command("acl|cat")
def acl_cat(c, argv):
    if len(argv) > 3:
        raise _syntax(argv)
    if len(argv) == 2:
        return encode([n.encode() for n in aclmod.CATEGORIES], c.resp)
    try:
        cat = argv[2].decode("ascii").lower()
    except UnicodeDecodeError:
        cat = None
    if cat not in aclmod.CATALOG.cat_cmds:
        raise CommandError("ERR Unknown category '%s'" % _s(argv[2])[:128])
    names = aclmod.CATALOG.names
    return encode([names[i].encode() for i in aclmod.CATALOG.cat_cmds[cat]], c.resp)


@command("acl|genpass")
def acl_genpass(c, argv):
    if len(argv) > 3:
        raise _syntax(argv)
    bits = 256
    if len(argv) == 3:
        bits = parse_int(argv[2])
    if bits <= 0 or bits > 4096:
        raise CommandError("ERR ACL GENPASS argument must be the number of bits for the "
                           "output password, a positive number up to 4096")
    chars = (bits + 3) // 4
    return bulk(os.urandom((chars + 1) // 2).hex()[:chars].encode())


@command("acl|log")
def acl_log(c, argv):
    if len(argv) > 3:
        raise _syntax(argv)
    srv = c.srv
    count = 10
    if len(argv) == 3:
        if argv[2].lower() == b"reset":
            srv.acl.log.clear()
            return OK
        count = max(0, parse_int(argv[2]))
    now = int(time.time() * 1000)
    out = []
    for le in srv.acl.log[:count]:
        out.append(Map([(b"count", le.count),
                        (b"reason", aclmod.REASONS[le.reason].encode()),
                        (b"context", le.context.encode()),
                        (b"object", le.object),
                        (b"username", le.username),
                        (b"age-seconds", Double((now - le.ctime) / 1000)),
                        (b"client-info", le.cinfo.encode("utf-8", "replace"))]))
    return encode(out, c.resp)


@command("acl|dryrun")
def acl_dryrun(c, argv):
    srv = c.srv
    u = srv.acl.get(argv[2])
    if u is None:
        raise CommandError("ERR User '%s' not found" % _s(argv[2]))
    args = argv[3:]
    cmd = srv.table.get(args[0].lower())
    if cmd is not None and cmd.subs is not None and len(args) > 1:
        cmd = cmd.subs.get(args[1].lower())
    if cmd is None:
        raise CommandError("ERR Command '%s' not found" % _s(args[0]))
    if (cmd.arity > 0 and len(args) != cmd.arity) or len(args) < -cmd.arity:
        raise CommandError("ERR wrong number of arguments for '%s' command" % cmd.name)
    result, idx = check_user(u, cmd, args)
    if result == aclmod.DENIED_CMD:
        return bulk(b"This user has no permissions to run the '%s' command"
                    % cmd.name.encode())
    if result == aclmod.DENIED_KEY:
        return bulk(b"This user has no permissions to access the '%s' key" % args[idx])
    if result == aclmod.DENIED_CHANNEL:
        return bulk(b"This user has no permissions to access the '%s' channel" % args[idx])
    return OK


def _aclfile(srv) -> str:
    path = srv.cfg.get("aclfile")
    if not path:
        raise CommandError(NO_ACLFILE)
    return path


@command("acl|load")
def acl_load(c, argv):
    srv = c.srv
    err = load_file(srv, c, _aclfile(srv))
    if err:
        raise CommandError("ERR " + err)
    return OK


@command("acl|save")
def acl_save(c, argv):
    srv = c.srv
    if not save_file(srv, _aclfile(srv)):
        raise CommandError("ERR There was an error trying to save the ACLs. Please check the "
                           "server logs for more information")
    return OK


@command("acl|help")
def acl_help(c, argv):
    from pynode.commands.server import _help
    return _help("ACL", HELP)


# ---------------------------------------------------------------- files
def load_file(srv, c, path: str) -> str:
    """ACLLoadFromFile: "" when loaded, else the errors (nothing changed)."""
    try:
        with open(path, "rb") as fh:
            text = fh.read()
    except OSError as e:
        return "Error loading ACLs, opening file '%s': %s" % (path, e.strerror)
    users, errors = srv.acl.parse_file(text, path)
    if users is None:
        return errors
    gone = srv.acl.install(users)
    disconnect_user_clients(srv, c, gone)
    refresh_clients(srv)
    return ""


def save_file(srv, path: str) -> bool:
    from storage.durable import atomic_write
    try:
        atomic_write(path, srv.acl.render().encode("utf-8", "surrogateescape"))
    except OSError as e:
        srv.log.warning("Writing ACL file for ACL SAVE: %s" % e.strerror)
        return False
    return True


def load_at_startup(srv) -> bool:
    """ACLLoadUsersAtStartup: the `user` lines of the config, or the aclfile
    (not both); False (with the reason logged) when start-up must stop."""
    log = srv.log
    cfg = srv.cfg
    path = cfg.get("aclfile")
    if path and cfg.users:
        log.warning("Configuring Redis with users defined in redis.conf and at the same "
                    "setting an ACL file path is invalid. This setup is very likely to lead "
                    "to configuration errors and security holes, please define either an ACL "
                    "file or declare users directly in your redis.conf, but not both.")
        return False
    acl = srv.acl
    for rules in cfg.users:
        name = rules[0]
        u = acl.get(name)
        if u is None:
            u = acl.users[name] = acl.new_user(name)
        else:
            u.apply(b"reset", acl.pubsub_default)
        for op in rules[1:]:
            try:
                u.apply(op, acl.pubsub_default)
            except aclmod.AclError as e:
                log.warning("Error loading ACL rule '%s' for the user named '%s': %s"
                            % (_s(op), _s(name), e.msg))
                log.warning("Critical error while loading ACLs. Exiting.")
                return False
        if not u.enabled:
            log.notice("The user '%s' is disabled (there is no 'on' modifier in the user "
                       "description). Make sure this is not a configuration error." % _s(name))
    if path:
        err = load_file(srv, None, path)
        if err:
            log.warning("Aborting Redis startup because of ACL errors: %s" % err)
            return False
    return True
