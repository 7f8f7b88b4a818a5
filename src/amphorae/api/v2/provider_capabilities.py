"""What each provider driver accepts in flavor and availability zone profiles.

The capability lists are served by /providers/{p}/flavor_capabilities and
/availability_zone_capabilities, and the same tables validate the JSON documents of
flavor profiles and availability zone profiles: a JSON object, known keys only, each
value of its type (and from its choices), as Octavia's amphora driver checks them with
its JSON schema.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from amphorae.common import config, errors
from amphorae.common import constants as c
from amphorae.db.scale import count_bounds

# JSON type name -> Python types accepted (bool is not a number in JSON schema).
JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "integer": (int,),
}


@dataclasses.dataclass(frozen=True)
class Capability:
    name: str
    json_type: str
    description: str
    choices: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Driver:
    flavor: tuple[Capability, ...]
    availability_zone: tuple[Capability, ...]


# The descriptions are Octavia's texts, word for word: clients and Octavia's conformance
# suite compare them.
AMPHORA_FLAVOR = (
    Capability("loadbalancer_topology", "string",
               "The load balancer topology. One of: SINGLE - One amphora per load "
               "balancer. ACTIVE_STANDBY - Two amphora per load balancer.",
               c.TOPOLOGIES),
    Capability("compute_flavor", "string", "The compute driver flavor ID."),
    Capability("amp_image_tag", "string", "The amphora image tag."),
    Capability("sriov_vip", "boolean",
               "When true, the VIP port will be created using an SR-IOV VF port."),
    Capability("allow_member_sriov", "boolean",
               "When true, users can request a member port be SR-IOV enabled at member "
               "creation time."),
    # Ours (issue 12): Octavia never shipped ACTIVE_ACTIVE.
    Capability("amphora_count_min", "integer",
               "ACTIVE_ACTIVE only: the fewest amphorae a load balancer runs (1 to "
               f"{c.AMPHORA_COUNT_LIMIT}, default {c.AMPHORA_COUNT_MIN_DEFAULT}); it "
               "starts with this many."),
    Capability("amphora_count_max", "integer",
               "ACTIVE_ACTIVE only: the most amphorae a load balancer may scale to "
               f"(amphora_count_min to {c.AMPHORA_COUNT_LIMIT}, default "
               f"{c.AMPHORA_COUNT_MAX_DEFAULT})."),
)

AMPHORA_AVAILABILITY_ZONE = (
    Capability("compute_zone", "string", "The compute availability zone."),
    Capability("volume_zone", "string", "The volume availability zone."),
    Capability("management_network", "string",
               "The management network ID for the amphora."),
    Capability("valid_vip_networks", "array",
               "List of network IDs that are allowed for VIP use. This overrides/replaces "
               "the list of allowed networks configured in `octavia.conf`."),
)

AMPHORA = Driver(flavor=AMPHORA_FLAVOR, availability_zone=AMPHORA_AVAILABILITY_ZONE)

# Provider name -> driver; "octavia" is the deprecated alias of the amphora driver.
DRIVERS: dict[str, Driver] = {c.PROVIDER_AMPHORA: AMPHORA, c.PROVIDER_OCTAVIA: AMPHORA}


def get_driver(provider: str) -> Driver:
    """The driver of an enabled provider (400 if not enabled, 501 if we have none)."""
    if provider not in config.CONF.api_settings.enabled_provider_drivers:
        raise errors.BadRequest(f"Provider '{provider}' is not enabled.")
    driver = DRIVERS.get(provider)
    if driver is None:
        raise errors.ProviderNotFound(provider=provider)
    return driver


def _unsupported(provider: str, detail: str) -> errors.APIError:
    # Octavia words every refusal so, with a 501; a malformed document is bad input
    # here, a 400 with the same text (an option the provider lacks is the 501).
    return errors.BadRequest(
        f"Provider '{provider}' does not support a requested option: {detail}")


def _show(value: Any) -> str:
    return json.dumps(value)


def validate(provider: str, capabilities: tuple[Capability, ...], data: Any) -> None:
    """Check a parsed profile document against a provider's capabilities."""
    if not isinstance(data, dict):
        raise _unsupported(provider, f"{_show(data)} is not of type 'object'")
    known = {cap.name: cap for cap in capabilities}
    unknown = [key for key in data if key not in known]
    if unknown:
        listed = ", ".join(f"'{key}'" for key in unknown)
        raise errors.ProviderUnsupportedOption(
            provider=provider, detail=f"Additional properties are not allowed ({listed} "
                                      f"{'was' if len(unknown) == 1 else 'were'} unexpected)")
    for key, value in data.items():
        cap = known[key]
        # JSON schema's booleans are not numbers, though Python's bool is an int.
        if (not isinstance(value, JSON_TYPES[cap.json_type])
                or (cap.json_type != "boolean" and isinstance(value, bool))):
            raise _unsupported(provider,
                               f"{key} {_show(value)} is not of type '{cap.json_type}'")
        if cap.choices and value not in cap.choices:
            raise _unsupported(provider, f"{key} {_show(value)} is not one of "
                                         f"{', '.join(cap.choices)}")


def validate_counts(data: dict[str, Any]) -> None:
    """An ACTIVE_ACTIVE flavor's amphora count bounds: only with that topology, and
    1 <= min <= max <= AMPHORA_COUNT_LIMIT. The 400 names the field."""
    given = [key for key in ("amphora_count_min", "amphora_count_max") if key in data]
    if not given:
        return
    if data.get("loadbalancer_topology") != c.TOPOLOGY_ACTIVE_ACTIVE:
        raise errors.ValidationError(
            detail=f"{given[0]} is only valid with loadbalancer_topology "
                   f"{c.TOPOLOGY_ACTIVE_ACTIVE}.")
    low, high = count_bounds(data)
    if not 1 <= low <= c.AMPHORA_COUNT_LIMIT:
        raise errors.ValidationError(
            detail=f"amphora_count_min {low} must be between 1 and {c.AMPHORA_COUNT_LIMIT}.")
    if not low <= high <= c.AMPHORA_COUNT_LIMIT:
        raise errors.ValidationError(
            detail=f"amphora_count_max {high} must be between amphora_count_min ({low}) "
                   f"and {c.AMPHORA_COUNT_LIMIT}.")


def parse_document(text: str, option: str) -> Any:
    """A profile's JSON document, or Octavia's InvalidOption 400."""
    try:
        return json.loads(text)
    except ValueError:
        raise errors.InvalidOption(value=text, option=option) from None


def validate_flavor_data(provider: str, text: str) -> Any:
    data = parse_document(text, "flavor_data")
    validate(provider, get_driver(provider).flavor, data)
    validate_counts(data)
    return data


def validate_availability_zone_data(provider: str, text: str) -> Any:
    data = parse_document(text, "availability_zone_data")
    validate(provider, get_driver(provider).availability_zone, data)
    return data


def listing(capabilities: tuple[Capability, ...]) -> list[dict[str, str]]:
    return [{"name": cap.name, "description": cap.description} for cap in capabilities]
