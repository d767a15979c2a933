"""Who is who and who may do what: identities, the access policy, tokens, limits per
identity, and reloading their files. Independent of gRPC: the edge
(``broadcaster/grpc/``) asks these with what a call carries."""

from ._access import (
    ANONYMOUS,
    LOCAL,
    AccessPolicy,
    Decision,
    Grant,
    IdentityEntry,
    Pattern,
    Permission,
    decide,
)
from ._authorizer import AccessDenied, Authorizer, Unauthenticated
from ._config import ListenerSecurity, SecurityConfig, is_loopback
from ._identity import AUTHORIZATION_METADATA, bearer_token, certificate_identity
from ._limits import IdentityLimiter, IdentityLimits, LimitExceeded, LimitTable
from ._policy_file import PolicyError, SecurityPolicy, load_policy, parse_policy
from ._reload import Reloadable
from ._tokens import (
    TokenError,
    TokenTable,
    hash_token,
    load_tokens,
    new_token,
    parse_tokens,
    token_line,
)

__all__ = [
    "ANONYMOUS",
    "AUTHORIZATION_METADATA",
    "LOCAL",
    "AccessDenied",
    "AccessPolicy",
    "Authorizer",
    "Decision",
    "Grant",
    "IdentityEntry",
    "IdentityLimiter",
    "IdentityLimits",
    "LimitExceeded",
    "LimitTable",
    "ListenerSecurity",
    "Pattern",
    "Permission",
    "PolicyError",
    "Reloadable",
    "SecurityConfig",
    "SecurityPolicy",
    "TokenError",
    "TokenTable",
    "Unauthenticated",
    "bearer_token",
    "certificate_identity",
    "decide",
    "hash_token",
    "is_loopback",
    "load_policy",
    "load_tokens",
    "new_token",
    "parse_policy",
    "parse_tokens",
    "token_line",
]
