"""A module no worker lists under require: importing it leaves a mark in Redis."""

import forkq

forkq.redis().set("shop:imported", "1")


def touch():
    return "ran"
