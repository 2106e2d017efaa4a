"""The stack's pieces. `DATA_PLANE` lists the data servers and tools in start order."""

from __future__ import annotations

from stack.piece import Piece
from stack.pieces.chdb_store import ChdbStore
from stack.pieces.helm import Helm
from stack.pieces.jaeger import Jaeger
from stack.pieces.kafka import Kafka
from stack.pieces.marquez import Marquez
from stack.pieces.postgres import Postgres

DATA_PLANE: list[Piece] = [Kafka(), Jaeger(), Helm(), ChdbStore()]
#: Marquez and its database, a group of their own: the Marquez server artifact
#: is not served by every Maven mirror, and the rest of the stack runs without it.
LINEAGE_STORE: list[Piece] = [Postgres(), Marquez()]

__all__ = [
    "DATA_PLANE",
    "LINEAGE_STORE",
    "ChdbStore",
    "Helm",
    "Jaeger",
    "Kafka",
    "Marquez",
    "Postgres",
]
