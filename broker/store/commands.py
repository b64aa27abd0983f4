"""The commands the Redis store sends: RESP packing, which of them may be sent twice, its Lua scripts.

What :mod:`broker.store.redis` needs to know about a command without sending it: how it goes on
the wire (:func:`pack`), whether a second run would be indistinguishable from the first
(:func:`idempotent`, the resend rules of :mod:`broker.store.redis`), and the scripts that make
a read-and-write one atomic O(1) step.
"""

from __future__ import annotations


def pack(args: tuple) -> bytes:
    """One command in RESP (the Redis protocol): an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int):
            arg = b"%d" % arg
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


#: Commands whose second run changes nothing and answers as if it were the only one.
READS = frozenset({"GET", "MGET", "SMEMBERS", "EXISTS", "PING", "WAIT", "INFO", "ROLE"})   # WAIT changes no data
SET_WRITES = frozenset({"SADD", "SREM"})   # their counts are not used by the store


def command_name(arg: str | bytes | int) -> str:
    """A command's name, upper case, however it was given."""
    return (arg.decode() if isinstance(arg, bytes) else str(arg)).upper()


def idempotent(command: tuple) -> bool:
    """Whether ``command`` may be sent again when its first send may have run.

    The rules are :mod:`broker.store.redis`'s ("When a command is sent again").
    """
    name = command_name(command[0])
    if name in READS or name in SET_WRITES:
        return True
    if name == "SET":   # SET key value EX ttl; not NX, XX, GET, KEEPTTL, ...
        return len(command) == 5 and command_name(command[3]) == "EX"
    if name == "EXPIRE":   # EXPIRE key ttl; EXPIRE ... NX answers 0 the second time
        return len(command) == 3
    if name == "EVAL":   # a script written to run twice (RESENDABLE_SCRIPTS)
        return command[1] in RESENDABLE_SCRIPTS
    return False


def incr(key: str, by: int) -> tuple:
    """``INCR``, or ``INCRBY`` for more than one."""
    return ("INCR", key) if by == 1 else ("INCRBY", key, by)


def names(commands: tuple[tuple, ...]) -> str:
    """The distinct command names of a round trip, for messages (never its keys or values)."""
    return " ".join(dict.fromkeys(command_name(command[0]) for command in commands))


def operation(commands: tuple[tuple, ...]) -> str:
    """The operation a failed round trip is counted under (broker.metrics.store_error): its first command."""
    return command_name(commands[0][0]).lower() if commands else "other"


#: zset_claim: the due members (ZRANGEBYSCORE, O(log n + count)) re-scored (ZADD XX, O(log n) each)
#: in one atomic step, so two instances claiming at once never get the same member.
ZSET_CLAIM = """
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(members) do
    redis.call('ZADD', KEYS[1], 'XX', ARGV[3], member)
end
return members
"""


#: set_claim: up to ARGV[1] members popped from the set (SPOP, O(count)) and added to the sorted set
#: (ZADD, O(log n) each) in one atomic step; never sent again (EVAL is not idempotent), and a lost
#: reply leaves the members in the sorted set, due at their score.
SET_CLAIM = """
local members = redis.call('SPOP', KEYS[1], tonumber(ARGV[1]))
for _, member in ipairs(members) do
    redis.call('ZADD', KEYS[2], ARGV[2], member)
end
if #members > 0 then
    redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
end
return members
"""

#: set_add_bounded: SISMEMBER, SCARD, then SADD + EXPIRE or INCR + EXPIRE of the refusal counter, all
#: O(1), in one atomic step, so the bound holds for every client at once.  A member already there
#: answers 1 without being counted: a resent batch adds nothing twice (a refused member resent is
#: counted twice, a count of what the audit lacks that errs high).
SET_ADD_BOUNDED = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then
    return 1
end
if redis.call('SCARD', KEYS[1]) < tonumber(ARGV[2]) then
    redis.call('SADD', KEYS[1], ARGV[1])
    redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
    return 1
end
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
return 0
"""

#: Scripts :func:`idempotent` lets be sent again after a lost reply: a second run leaves the data
#: as the first did (EVAL of any other script is never sent again).
RESENDABLE_SCRIPTS = frozenset({SET_ADD_BOUNDED})
