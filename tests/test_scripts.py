"""Script: EVALSHA first, EVAL with the text after NOSCRIPT, on a real Redis."""

import asyncio

import redis.asyncio as aioredis

from forkq import connection
from forkq.connection.scripts import Script

ECHO = Script("return {KEYS[1], ARGV[1]}")


def sent_commands(client, monkeypatch):
    sent = []
    real = client.execute_command
    monkeypatch.setattr(client, "execute_command",
                        lambda *a, **options: sent.append(a[0]) or real(*a, **options))
    return sent


def test_a_script_is_sent_as_text_only_when_the_server_lacks_it(redis, monkeypatch):
    redis.script_flush()
    sent = sent_commands(redis, monkeypatch)
    assert ECHO(redis, ["k"], ["v"]) == ["k", "v"]
    assert ECHO(redis, ["k"], ["w"]) == ["k", "w"]
    assert sent == ["EVALSHA", "EVAL", "EVALSHA"]
    assert redis.script_exists(ECHO.sha) == [True]


def test_raw_keeps_the_reply_as_bytes(redis):
    assert ECHO(redis, ["k"], [b"\xff"], raw=True) == [b"k", b"\xff"]


def test_send_by_serves_a_caller_that_sends_the_command_itself(redis):
    redis.script_flush()
    sent = []

    def send(command):
        sent.append(command[0])
        return connection.send_commands(redis, [command])[0]

    assert ECHO.send_by(send, ECHO.command(["k"], ["v"])) == ["k", "v"]
    assert sent == ["EVALSHA", "EVAL"]


def test_the_asyncio_client_follows_the_same_rule(redis, redis_url):
    redis.script_flush()

    async def run():
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            first = await ECHO.call_async(client, ["k"], ["v"])
            return first, await ECHO.call_async(client, ["k"], ["w"])
        finally:
            await client.aclose()

    assert asyncio.run(run()) == (["k", "v"], ["k", "w"])
    assert redis.script_exists(ECHO.sha) == [True]
