"""The mapping micro-service: upstream attributes in, canonical identity out.

A SATOSA response micro-service around the pure rule engine in
:mod:`broker.mapping`.  It picks the ruleset of the IdP this flow was sent to
(kept in the sealed flow state, never taken from the response), so one city's
rules can never be applied to another city's response.
"""

from __future__ import annotations

from typing import Mapping

from satosa.micro_services.base import ResponseMicroService

from broker.errors import InvalidResponse, NoUserId
from broker.proxy.base import CHOSEN_IDP


class MappingService(ResponseMicroService):
    def __init__(self, config, internal_attributes, name, base_url, *, rulesets: Mapping, salt: bytes):
        super().__init__(name=name, base_url=base_url)
        self.rulesets = rulesets
        self.salt = salt

    def process(self, context, data):
        idp_key = (context.state or {}).get(CHOSEN_IDP)
        ruleset = self.rulesets.get(idp_key)
        if ruleset is None:
            raise InvalidResponse("response for a flow without a known IdP")
        result = ruleset.apply(data.attributes, upstream_subject=data.subject_id, salt=self.salt)
        if result.refused:
            raise NoUserId(f"mapping refused the login: {result.refused}")
        data.attributes = result.identity
        data.subject_id = result.identity["user_id"]
        return self.next(context, data)

