"""Random per-room aliases such as ``quiet-heron-27``.

An alias is drawn fresh from ``secrets`` for every seat, so nothing links a person's
seats across rooms. 64 adjectives x 64 animals x 90 numbers gives 368,640 aliases, far
more than the largest room, and retries make them unique within a room.
"""

from __future__ import annotations

import secrets
from collections.abc import Container

ADJECTIVES = (
    "amber azure brave bright calm clever cosmic crisp curious daring deep gentle "
    "golden good grand green happy hazel honest humble jolly keen kind lively loyal "
    "lucid lunar mellow merry mild misty noble olive patient peaceful plucky polite "
    "proud quiet rapid ready rosy royal rustic sage shy silver simple snowy solar "
    "steady sunny swift tender tidy tranquil true upbeat vivid warm wise witty young "
    "zesty"
).split()
ANIMALS = (
    "badger bear beaver bison crane deer dolphin dove eagle egret falcon ferret "
    "finch fox gecko goose hare hawk hedgehog heron ibis jay koala lark lemur lion "
    "llama lynx marten mink moose newt orca otter owl panda parrot pelican penguin "
    "puffin quail rabbit raven robin salmon seal sparrow stork swan tapir tern tiger "
    "toucan trout turtle viper walrus whale wolf wombat wren yak zebra bat"
).split()
assert len(set(ADJECTIVES)) == 64
assert len(set(ANIMALS)) == 64


def new_alias(taken: Container[str]) -> str:
    """A random alias not in ``taken``."""
    while True:
        alias = (
            f"{secrets.choice(ADJECTIVES)}-{secrets.choice(ANIMALS)}-{10 + secrets.randbelow(90)}"
        )
        if alias not in taken:
            return alias
