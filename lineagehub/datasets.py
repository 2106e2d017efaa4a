"""Dataset identity per the OpenLineage naming spec, from a source or sink URI.

- `file:///data/orders.csv`            -> ("file", "/data/orders.csv")
- `https://host:8443/exports/a.csv`    -> ("https://host:8443", "/exports/a.csv")
- `s3://bucket/path/to/key.parquet`    -> ("s3://bucket", "path/to/key.parquet")
- `clickhouse://host:9000/db.table`    -> ("clickhouse://host:9000", "db.table")

Credentials never become part of a name: `user:password@` is dropped from the
authority (`clickhouse://u:p@host:9000/db.t` is `clickhouse://host:9000`), and the
query string is no part of a name either. `redact_uri` / `redact_text` are the one
place a URI is made fit to show (messages, span attributes, status fields, lineage
events): they drop the userinfo and replace the value of every query-string or
fragment parameter that carries a secret (presigned S3 and GCS URLs, Azure SAS tokens,
`token`, `access_token`, `api_key`, `password`, `secret`...) with `REDACTED`.

Stdlib only: the operator, the runner and the consumers all use it.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

#: What a secret parameter's value is replaced with.
MASK = "REDACTED"

# `scheme://userinfo@` inside free text: the userinfo is what gets dropped.
# Greedy up to the last `@` before the path's `/`: a password may hold a raw `@`, `?` or
# `#` of its own (over-redacting a host whose query holds an `@` is the safe mistake).
_USERINFO_IN_TEXT = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://)[^\s/]*@")
# A URI inside free text, up to the first character no URI holds.
_URI_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")
# `name=value` after `?`, `&`, `;` or `#`: a parameter of a query string or fragment.
# A value ends only where a parameter or the text does (a quote may be part of a
# secret); punctuation that closes a sentence (`...?token=x: failed`) stays outside it.
_PARAM = re.compile(
    r"(?P<lead>[?&;#])(?P<name>[^=&;#?\s'\"<>`]+)="
    r"(?P<value>[^&;#\s]*?)(?=[.,:!)\]}'\"]*(?:[&;#\s]|$))"
)

#: Parameters whose value is a secret wherever they appear (compared lower-cased, with
#: `-` read as `_`): AWS SigV4 and GCS V4 presigned URLs, the Azure SAS signature,
#: OAuth and API tokens.
_SECRET_NAMES = frozenset(
    {
        "x_amz_signature",
        "x_amz_credential",
        "x_amz_security_token",
        "x_goog_signature",
        "x_goog_credential",
        "googleaccessid",
        "signature",
        "sig",
        "key",
        "pwd",
        "pass",
        "auth",
        "authorization",
        "code",
        "client_assertion",
        "sessionid",
        "session_id",
    }
)
#: Words that make any parameter holding them secret (`client_secret`, `id_token`...).
_SECRET_WORDS = (
    "token",
    "secret",
    "password",
    "passwd",
    "passphrase",
    "apikey",
    "api_key",
    "access_key",
    "private_key",
    "credential",
)
#: The fields of an Azure SAS token: masked too when the URI carries a SAS signature
#: (`sig`), since together they are the credential.
_SAS_FIELDS = frozenset(
    {
        "sv", "ss", "srt", "sp", "se", "st", "spr", "sip", "sr", "si", "sdd", "skoid",
        "sktid", "skt", "ske", "sks", "skv", "saoid", "suoid", "scid", "ses", "rscc",
        "rscd", "rsce", "rscl", "rsct",
    }
)  # fmt: skip


def _normal(name: str) -> str:
    return unquote(name).strip().lower().replace("-", "_")


def is_secret_param(name: str, *, sas: bool = False) -> bool:
    """Whether the value of query parameter `name` is a secret (`sas`: the URI carries an
    Azure SAS signature, which makes the SAS fields part of the credential)."""
    norm = _normal(name)
    if norm in _SECRET_NAMES or any(word in norm for word in _SECRET_WORDS):
        return True
    return sas and norm in _SAS_FIELDS


def _mask_params(text: str) -> str:
    """`text` (a URI, or a query string with its leading `?`) with every secret parameter's
    value replaced by `MASK`."""
    sas = any(_normal(m.group("name")) == "sig" for m in _PARAM.finditer(text))

    def mask(match: re.Match[str]) -> str:
        if not match.group("value") or not is_secret_param(match.group("name"), sas=sas):
            return match.group(0)
        return f"{match.group('lead')}{match.group('name')}={MASK}"

    return _PARAM.sub(mask, text)


def _authority(parts: SplitResult) -> str:
    """host[:port] of a URI, without any userinfo."""
    return parts.netloc.rpartition("@")[2]


def _raw_userinfo_end(uri: str) -> int:
    """Where the host starts in `scheme://userinfo@host/...` read as typed (0: no
    userinfo): after the last `@` before the path's first `/`, so a password holding a
    raw `#`, `?` or space (which `urlsplit` would read as a fragment or query) is still
    found."""
    start = uri.find("://")
    if start < 0:
        return 0
    start += 3
    slash = uri.find("/", start)
    at = uri.rfind("@", start, slash if slash >= 0 else len(uri))
    return at + 1 if at >= 0 else 0


def dataset_of(uri: str) -> tuple[str, str]:
    """(namespace, name) of the dataset at `uri`; credentials are never part of it."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    host = _authority(parts)
    if scheme == "file":
        return "file", parts.path or "/"
    if scheme in {"http", "https"}:
        return f"{scheme}://{host}", parts.path or "/"
    if scheme == "s3":
        return f"s3://{host}", parts.path.lstrip("/")
    if scheme == "clickhouse":
        return f"clickhouse://{host}", parts.path.lstrip("/")
    raise ValueError(f"unsupported dataset URI scheme {scheme!r} in {redact_uri(uri)!r}")


def redact_uri(uri: str) -> str:
    """`uri` without its userinfo and with its secret parameters masked:
    `https://u:p@h/x?X-Amz-Signature=ab&v=1` -> `https://h/x?X-Amz-Signature=REDACTED&v=1`."""
    host_at = _raw_userinfo_end(uri)
    if host_at:
        uri = uri[: uri.find("://") + 3] + uri[host_at:]
    try:
        parts = urlsplit(uri)
    except ValueError:
        return redact_text(uri)
    if "@" in parts.netloc:
        uri = urlunsplit(parts._replace(netloc=_authority(parts)))
    return _mask_params(uri)


def redact_text(text: str) -> str:
    """`text` with the userinfo of every `scheme://user:password@` in it dropped and the
    secret parameters of every URI (and of any bare `?a=b&c=d` left) masked."""
    text = _USERINFO_IN_TEXT.sub(r"\1", text)
    text = _URI_IN_TEXT.sub(lambda m: _mask_params(m.group(0)), text)
    return _mask_params(text)
