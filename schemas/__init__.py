"""The event contract: Avro schemas (``*.avsc``) and the one codec every producer and
consumer uses. See ``schemas/README.md`` for the wire format and the evolution rules.

    from oneloc.schemas import encode, decode, validate
    data = encode("Order", {...})          # validates, then Avro single-object encoding
    name, record = decode(data)            # any known writer version -> the current reader schema
"""

from oneloc.schemas.codec import (
    SCHEMA_NAMES,
    SchemaRegistry,
    decode,
    encode,
    fingerprint,
    registry,
)
from oneloc.schemas.validation import validate

__all__ = ["SCHEMA_NAMES", "SchemaRegistry", "decode", "encode", "fingerprint", "registry", "validate"]
