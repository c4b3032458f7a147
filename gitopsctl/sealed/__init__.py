"""SealedSecret seal / unseal, byte-compatible with bitnami-labs kubeseal.

Each value is sealed on its own with kubeseal's hybrid scheme (hybrid.py): a fresh AES-256-GCM
session key encrypts the value, RSA-OAEP wraps the session key. The OAEP label binds the value
to where it may be unsealed (resource.py): "<namespace>/<name>" (strict), "<namespace>"
(namespace-wide) or "" (cluster-wide), so a SealedSecret that is renamed, moved or re-scoped
no longer decrypts.

    keys.py      load_public_key / load_private_key(s)
    seal.py      seal_secret: Secret dict -> SealedSecret dict
    unseal.py    decrypted_items / unseal_secret: SealedSecret dict -> values / Secret dict
    yamlio.py    parse_manifest / dump_manifest: text <-> dict, with file:line for errors

Nothing here prints, and no error message ever contains secret material. Errors are
gitopsctl.errors.InputError with a hint.
"""

from gitopsctl.sealed.hybrid import DecryptFailure, hybrid_decrypt, hybrid_encrypt
from gitopsctl.sealed.keys import MIN_KEY_BITS, load_private_key, load_private_keys, load_public_key
from gitopsctl.sealed.resource import (ANNOTATION_CLUSTER_WIDE, ANNOTATION_NAMESPACE_WIDE,
                                       API_VERSION, CLUSTER_WIDE, KIND, NAMESPACE_WIDE, SCOPES,
                                       SECRET_API_VERSION, SECRET_KIND, STRICT, encryption_label,
                                       scope_of, with_scope_annotations)
from gitopsctl.sealed.seal import seal_secret
from gitopsctl.sealed.unseal import PrivateKeys, decrypted_items, unseal_secret
from gitopsctl.sealed.yamlio import dump_manifest, parse_manifest

__all__ = [
    "ANNOTATION_CLUSTER_WIDE", "ANNOTATION_NAMESPACE_WIDE", "API_VERSION", "CLUSTER_WIDE",
    "DecryptFailure", "KIND", "MIN_KEY_BITS", "NAMESPACE_WIDE", "PrivateKeys", "SCOPES",
    "SECRET_API_VERSION", "SECRET_KIND", "STRICT", "decrypted_items", "dump_manifest",
    "encryption_label", "hybrid_decrypt", "hybrid_encrypt", "load_private_key",
    "load_private_keys", "load_public_key", "parse_manifest", "scope_of", "seal_secret",
    "unseal_secret", "with_scope_annotations",
]
