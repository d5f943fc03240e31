"""Validation of catalog input (pure: no database, no protobuf).

Drafts carry what a client sent; `validate_plan` / `validate_api` return the canonical draft that gets
stored or raise InvalidArgument naming the offending field (as its path in the proto, e.g.
`pricing.tiers[1].up_to`). Checks that need the database (unique names, overlapping context paths,
unknown plans) live in the store.

Canonical forms:
- money: plain decimal text of the parsed amount, scale kept ("49.00" stays "49.00", "007.5" becomes
  "7.5", unset becomes "0"); see tollway.money.
- currency: upper case; limits.quota_policy: QuotaPolicy HARD or SOFT (unspecified means HARD).
- upstream URLs: lower-case scheme and host, no trailing slash on the path ("http://B:8080/" becomes
  "http://b:8080").
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from tollway.catalog.limits import LIMIT_FIELDS, PlanLimits
from tollway.catalog.pricing import BILLABLE_CLASSES as BILLABLE_CLASSES
from tollway.catalog.pricing import MAX_COUNT as MAX_COUNT
from tollway.catalog.pricing import PriceTierDraft as PriceTierDraft
from tollway.catalog.pricing import PricingDraft as PricingDraft
from tollway.catalog.pricing import validate_count
from tollway.catalog.pricing import validate_pricing as validate_pricing
from tollway.errors import InvalidArgument
from tollway.vocabulary import QuotaPolicy

MAX_NAME_LENGTH = 100
MAX_VERSION_LENGTH = 50
MAX_DESCRIPTION_LENGTH = 4000
MAX_CONTEXT_PATH_LENGTH = 200
MAX_UPSTREAM_URLS = 16
MAX_URL_LENGTH = 2048
MAX_PLANS_PER_API = 32

QUOTA_POLICIES = tuple(QuotaPolicy)


@dataclass(frozen=True, slots=True)
class PlanDraft:
    name: str = ""
    description: str = ""
    limits: PlanLimits = field(default_factory=PlanLimits)
    pricing: PricingDraft = field(default_factory=PricingDraft)
    approval_required: bool = False
    # Admitted only while the application holds credit in the plan's currency (billing/credit.py).
    prepaid: bool = False


@dataclass(frozen=True, slots=True)
class ApiDraft:
    name: str = ""
    version: str = ""
    context_path: str = ""
    upstream_urls: tuple[str, ...] = ()
    # Plan identifiers (or names; the store resolves them to identifiers).
    plan_ids: tuple[str, ...] = ()
    description: str = ""


# Top-level fields an update may replace (the update_mask paths of the proto).
PLAN_FIELDS = ("name", "description", "limits", "pricing", "approval_required", "prepaid")
API_FIELDS = ("name", "version", "context_path", "upstream_urls", "plan_ids", "description")

# RFC 3986 unreserved characters: safe in every URL and route without escaping.
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
# RFC 3986 pchar: unreserved, sub-delims, ":", "@" and percent-escapes.
_URL_PATH_SEGMENT = re.compile(r"(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})+")
_HOST_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


# --- text -------------------------------------------------------------------------------------------


def _has_control(value: str, allowed: str = "") -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf") and ch not in allowed for ch in value)


def validate_name(value: str, field: str, max_length: int = MAX_NAME_LENGTH) -> str:
    if not value or not value.strip():
        raise InvalidArgument(f"{field} is required")
    if len(value) > max_length:
        raise InvalidArgument(f"{field} must be at most {max_length} characters, got {len(value)}")
    if value != value.strip():
        raise InvalidArgument(f"{field} must not start or end with whitespace: {value!r}")
    if _has_control(value):
        raise InvalidArgument(f"{field} must not contain control characters: {value!r}")
    return value


def validate_version(value: str, field: str = "version") -> str:
    """Optional; when given, a short token such as "v1", "2.1" or "2024-06-01" (no ":" so that
    "name:version" lookups stay unambiguous)."""
    if value == "":
        return value
    if len(value) > MAX_VERSION_LENGTH:
        raise InvalidArgument(f"{field} must be at most {MAX_VERSION_LENGTH} characters, got {len(value)}")
    if not _VERSION.fullmatch(value):
        raise InvalidArgument(
            f"{field} {value!r} must start with a letter or digit and contain only letters, digits "
            "and . _ + -"
        )
    return value


def validate_description(value: str, field: str = "description") -> str:
    if len(value) > MAX_DESCRIPTION_LENGTH:
        raise InvalidArgument(
            f"{field} must be at most {MAX_DESCRIPTION_LENGTH} characters, got {len(value)}"
        )
    if _has_control(value, allowed="\n\r\t"):
        raise InvalidArgument(f"{field} must not contain control characters other than newlines and tabs")
    return value


# --- context paths ----------------------------------------------------------------------------------


def validate_context_path(path: str, field: str = "context_path") -> str:
    """A gateway path prefix such as "/weather/v1": "/"-separated segments of URL-safe characters."""
    if not path:
        raise InvalidArgument(f'{field} is required, e.g. "/weather/v1"')
    if len(path) > MAX_CONTEXT_PATH_LENGTH:
        raise InvalidArgument(
            f"{field} must be at most {MAX_CONTEXT_PATH_LENGTH} characters, got {len(path)}"
        )
    if not path.startswith("/"):
        raise InvalidArgument(f'{field} must start with "/", got {path!r}')
    if path == "/":
        raise InvalidArgument(f'{field} must not be "/" alone: every API needs a path prefix of its own')
    if path.endswith("/"):
        raise InvalidArgument(f'{field} must not end with "/": use {path.rstrip("/")!r}')
    for segment in path[1:].split("/"):
        if segment == "":
            raise InvalidArgument(f'{field} must not contain "//", got {path!r}')
        if segment in (".", ".."):
            raise InvalidArgument(f'{field} must not contain "." or ".." segments, got {path!r}')
        if not _PATH_SEGMENT.fullmatch(segment):
            raise InvalidArgument(
                f"{field} segment {segment!r} may contain only letters, digits and . _ ~ - (got {path!r})"
            )
    return path


def paths_overlap(a: str, b: str, ignore_case: bool = True) -> bool:
    """Whether two context paths would compete for requests: equal, or one a segment prefix of the
    other ("/a" and "/a/b" overlap, "/a" and "/ab" do not).

    Compared case-insensitively although Envoy routes case-sensitively: "/Weather" next to "/weather"
    is almost certainly a mistake, clients and proxies in front of the gateway may fold case, and
    it keeps the gateway free to match case-insensitively later.
    """
    if ignore_case:
        a, b = a.lower(), b.lower()
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


# --- upstream URLs ----------------------------------------------------------------------------------


def _validate_host(host: str, bracketed: bool, field: str, url: str) -> str:
    if bracketed:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise InvalidArgument(f"{field} has an invalid IPv6 address: {url!r}") from None
        return f"[{host}]"
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise InvalidArgument(f"{field} has an invalid IPv4 address: {url!r}") from None
        return host
    labels = host.removesuffix(".").split(".")
    if len(host) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise InvalidArgument(f"{field} has an invalid host name {host!r}: {url!r}")
    return host


def validate_upstream_url(url: str, field: str = "upstream_url") -> str:
    """The canonical form of one backend URL: http(s), a host, an optional port, an optional path."""
    if not url:
        raise InvalidArgument(f"{field} must not be empty")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidArgument(f"{field} must be at most {MAX_URL_LENGTH} characters, got {len(url)}")
    if not url.isascii() or any(ch.isspace() or not ch.isprintable() for ch in url):
        raise InvalidArgument(
            f"{field} must be ASCII without spaces or control characters (punycode host names, "
            f"percent-encoded paths): {url!r}"
        )
    try:
        parts = urlsplit(url)
    except ValueError:
        raise InvalidArgument(f"{field} is not a valid URL: {url!r}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not url[len(scheme) + 1 :].startswith("//"):
        raise InvalidArgument(f"{field} must be an http:// or https:// URL, got {url!r}")
    if "?" in url or "#" in url:
        raise InvalidArgument(f"{field} must not have a query or fragment: {url!r}")
    if "@" in parts.netloc:
        raise InvalidArgument(f"{field} must not contain user information (credentials): {url!r}")
    host = parts.hostname or ""
    if not host:
        raise InvalidArgument(f"{field} must name a host: {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise InvalidArgument(f"{field} port must be a number from 1 to 65535: {url!r}") from None
    if port == 0:
        raise InvalidArgument(f"{field} port must be a number from 1 to 65535: {url!r}")
    netloc = _validate_host(host, parts.netloc.startswith("["), field, url)
    if port is not None:
        netloc += f":{port}"
    path = parts.path.rstrip("/")
    for segment in path.split("/")[1:]:
        if segment == "":
            raise InvalidArgument(f'{field} path must not contain "//": {url!r}')
        if segment in (".", ".."):
            raise InvalidArgument(f'{field} path must not contain "." or ".." segments: {url!r}')
        if not _URL_PATH_SEGMENT.fullmatch(segment):
            raise InvalidArgument(f"{field} path has an invalid segment {segment!r}: {url!r}")
    return f"{scheme}://{netloc}{path}"


def validate_upstream_urls(urls: Sequence[str], field: str = "upstream_urls") -> tuple[str, ...]:
    """0 to MAX_UPSTREAM_URLS distinct URLs sharing scheme and path (publishing needs at least one)."""
    if len(urls) > MAX_UPSTREAM_URLS:
        raise InvalidArgument(f"{field} may list at most {MAX_UPSTREAM_URLS} URLs, got {len(urls)}")
    canonical = tuple(validate_upstream_url(url, f"{field}[{i}]") for i, url in enumerate(urls))
    seen: set[str] = set()
    for url in canonical:
        if url in seen:
            raise InvalidArgument(f"{field} lists {url!r} twice")
        seen.add(url)
    if canonical:
        first = urlsplit(canonical[0])
        for url in canonical[1:]:
            other = urlsplit(url)
            if (other.scheme, other.path) != (first.scheme, first.path):
                raise InvalidArgument(
                    f"{field}: every URL of an API must share scheme and path; {canonical[0]!r} and "
                    f"{url!r} differ"
                )
    return canonical


# --- plans --------------------------------------------------------------------------------------------


def validate_limits(limits: PlanLimits) -> PlanLimits:
    for name in LIMIT_FIELDS:
        validate_count(getattr(limits, name), f"limits.{name}")
    policy = limits.quota_policy.upper() or QuotaPolicy.HARD
    if policy not in QUOTA_POLICIES:
        raise InvalidArgument(f"limits.quota_policy must be HARD or SOFT, got {limits.quota_policy!r}")
    return replace(limits, quota_policy=QuotaPolicy(policy))


def validate_plan(plan: PlanDraft) -> PlanDraft:
    limits = validate_limits(plan.limits)
    return PlanDraft(
        name=validate_name(plan.name, "name"),
        description=validate_description(plan.description),
        limits=limits,
        pricing=validate_pricing(plan.pricing, limits),
        approval_required=plan.approval_required,
        prepaid=plan.prepaid,
    )


# --- APIs ---------------------------------------------------------------------------------------------


def validate_plan_refs(plan_ids: Sequence[str], field: str = "plan_ids") -> tuple[str, ...]:
    if len(plan_ids) > MAX_PLANS_PER_API:
        raise InvalidArgument(f"{field} may list at most {MAX_PLANS_PER_API} plans, got {len(plan_ids)}")
    seen: set[str] = set()
    for i, plan_id in enumerate(plan_ids):
        if not plan_id:
            raise InvalidArgument(f"{field}[{i}] must not be empty")
        if plan_id in seen:
            raise InvalidArgument(f"{field} lists {plan_id!r} twice")
        seen.add(plan_id)
    return tuple(plan_ids)


def validate_api(api: ApiDraft) -> ApiDraft:
    return ApiDraft(
        name=validate_name(api.name, "name"),
        version=validate_version(api.version),
        context_path=validate_context_path(api.context_path),
        upstream_urls=validate_upstream_urls(api.upstream_urls),
        plan_ids=validate_plan_refs(api.plan_ids),
        description=validate_description(api.description),
    )
