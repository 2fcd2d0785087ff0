"""``visearch user``: a shopper's personalisation profile on a running ranking service: show it, or forget it
(the service removes it from its cache and writes a tombstone to the compacted profiles topic).

Profiles live on the profiles topic of a Kafka deployment, so these commands talk to a ranking service
(``--server``); exit code 2 on an error (unknown server, no profiles configured, broker down).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

user_app = typer.Typer(
    help="A shopper's personalisation profile (learned from their feedback): show it, forget it.",
    no_args_is_help=True,
)
console = Console()

UserArgument = Annotated[str, typer.Argument(help="The user_id (opaque, as sent in SearchRequest.user_id).")]
ServerOption = Annotated[
    str,
    typer.Option(
        "--server",
        help="The ranking service (host:port), e.g. 127.0.0.1:50051 for `make up`; TLS and token from "
        "$VISEARCH_SECURITY_*.",
    ),
]


def _call(server: str, method: str, user_id: str):
    import grpc

    from visearch.shared.grpcutil import client_channel
    from visearch.v1 import search_pb2, search_pb2_grpc

    with client_channel(server) as channel:
        try:
            stub = search_pb2_grpc.SearchServiceStub(channel)
            return getattr(stub, method)(search_pb2.UserProfileRequest(user_id=user_id), timeout=60)
        except grpc.RpcError as exc:
            console.print(f"[red]error[/] {exc.code().name}: {exc.details()}")
            raise typer.Exit(2) from exc


@user_app.command("show")
def show(
    user_id: UserArgument,
    server: ServerOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print the response as JSON.")] = False,
) -> None:
    """The user's profile: evidence, whether it applies, strongest concepts, factor multipliers."""
    from google.protobuf.json_format import MessageToDict

    response = _call(server, "GetUserProfile", user_id)
    if as_json:
        console.print_json(json.dumps(MessageToDict(response)))
        return
    if not response.found:
        console.print(f"no profile for {user_id!r} (searches rank as for a user without history)")
        return
    p = response.profile
    state = "applies" if response.applies else "below the minimum evidence: not applied yet"
    console.print(f"{user_id}: {p.events} events folded, evidence {p.evidence:.2f} ({state}), version {p.version}")
    table = Table(title="strongest concepts")
    table.add_column("concept")
    table.add_column("affinity", justify="right")
    for concept in response.concepts:
        table.add_row(concept.value, f"{concept.score:.3f}")
    console.print(table)
    for factor, multiplier in sorted(response.factor_multipliers.items()):
        console.print(f"factor {factor}: weight x{multiplier:.2f}")


@user_app.command("forget")
def forget(user_id: UserArgument, server: ServerOption) -> None:
    """Delete the user's profile everywhere: the service's cache and the profiles topic (a tombstone)."""
    response = _call(server, "ForgetUser", user_id)
    held = "removed" if response.existed else "none held; tombstone written anyway"
    console.print(f"forgot {user_id}: profile {held}")
