"""/v2/lbaas/availabilityzoneprofiles: provider-specific availability zone documents
(admin only), served by the generic profile controllers of flavorprofiles.py."""

from __future__ import annotations

from amphorae.api import listing
from amphorae.api.v2 import provider_capabilities as caps
from amphorae.api.v2.flavorprofiles import (
    Document,
    Profile,
    ProfileCreate,
    ProfileKind,
    Profiles,
    ProfileUpdate,
)
from amphorae.db import models as m


class Create(ProfileCreate):
    availability_zone_data: Document


class Update(ProfileUpdate):
    availability_zone_data: Document | None = None


COLLECTION = listing.Collection(
    model=m.AvailabilityZoneProfile, key="availability_zone_profiles",
    links_key="availability_zone_profile_links",
    columns={"id": m.AvailabilityZoneProfile.id, "name": m.AvailabilityZoneProfile.name,
             "provider_name": m.AvailabilityZoneProfile.provider_name,
             "availability_zone_data": m.AvailabilityZoneProfile.availability_zone_data},
    taggable=False,
)

KIND = ProfileKind(
    model=m.AvailabilityZoneProfile, key="availability_zone_profile",
    rule="availability-zone-profile", resource_name="Availability Zone Profile",
    data_field="availability_zone_data", create=Create, update=Update,
    validate=caps.validate_availability_zone_data,
    used_by=m.AvailabilityZone.availability_zone_profile_id, collection=COLLECTION,
)

ROUTES = [
    ("/availabilityzoneprofiles", Profiles(KIND)),
    ("/availabilityzoneprofiles/{profile_id}", Profile(KIND)),
]
