"""`kotune users add|list|remove|passwd`: the owner's accounts tool (e.g. the partner's account
on a server whose sign-up is closed). Passwords come from a prompt or stdin, never argv."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from kotune.errors import KotuneError


def add_users_parser(sub: Any) -> None:
    """The `users` subcommand group on the kotune parser."""
    users = sub.add_parser(
        "users", help="manage the web chat's accounts (add, list, remove, passwd)"
    )
    users.add_argument(
        "--db", help="the chat database's SQLAlchemy URL (default: the one kotune serve uses)"
    )
    actions = users.add_subparsers(dest="action", required=True)
    p = actions.add_parser("add", help="make an account; the password is asked for (or stdin)")
    p.add_argument("username")
    p.add_argument("--name", default="", help="the name the page greets them by")
    p = actions.add_parser("list", help="accounts with their number of conversations")
    p = actions.add_parser("remove", help="delete an account and all its conversations")
    p.add_argument("username")
    p = actions.add_parser("passwd", help="set a new password (ends the account's sessions)")
    p.add_argument("username")
    users.set_defaults(run=run_users)


def read_password(confirm: bool) -> str:
    """From the terminal (asked twice, not echoed), or the first line of stdin when piped:
    `printf '%s\\n' "$PW" | kotune users add minji`."""
    from kotune.serving.accounts import AccountError, check_password

    if sys.stdin is not None and sys.stdin.isatty():
        password = getpass.getpass("비밀번호 (password): ")
        if confirm and getpass.getpass("한 번 더 (again): ") != password:
            raise KotuneError("the two passwords differ")
    else:
        line = sys.stdin.readline() if sys.stdin is not None else ""
        if not line:
            raise KotuneError("no password on stdin (pipe one line, or run in a terminal)")
        password = line.rstrip("\r\n")
    try:
        return check_password(password)
    except AccountError as error:
        raise KotuneError(f"password: {error}") from None


def run_users(args: argparse.Namespace) -> int:
    from kotune.serving.accounts import AccountError, check_username, hash_password
    from kotune.serving.store import default_db_url, display_url, open_store

    url = args.db or default_db_url()
    store = open_store(url)
    try:
        if args.action == "list":
            rows = store.list_users()
            for row in rows:
                name = f" ({row['display_name']})" if row["display_name"] else ""
                print(
                    f"{row['username']}{name}\t{row['conversations']} conversations\t"
                    f"since {row['created_at']:%Y-%m-%d}"
                )
            print(f"{len(rows)} accounts in {display_url(url)}", file=sys.stderr)
            return 0
        try:
            username = check_username(args.username)
        except AccountError as error:
            raise KotuneError(f"username {args.username!r}: {error}") from None
        if args.action == "add":
            password_hash = hash_password(read_password(confirm=True))
            store.add_user(username, password_hash, " ".join(args.name.split())[:100])
            print(f"added {username} to {display_url(url)}", file=sys.stderr)
        elif args.action == "passwd":
            if store.user_by_name(username) is None:
                raise KotuneError(f"no user {username!r} in {display_url(url)}")
            store.set_password_hash(username, hash_password(read_password(confirm=True)))
            print(f"new password for {username}; their sessions are ended", file=sys.stderr)
        elif args.action == "remove":
            if not store.remove_user(username):
                raise KotuneError(f"no user {username!r} in {display_url(url)}")
            print(f"removed {username} and their conversations", file=sys.stderr)
        return 0
    finally:
        store.close()
