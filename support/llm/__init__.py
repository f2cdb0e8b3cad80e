"""The model API boundary: pricing, breaker, shared budget and the gateway that is the only caller."""

from support.llm.gateway import GatewayStream, ModelGateway, make_client
from support.llm.pricing import TokenCounts, cost

__all__ = ["GatewayStream", "ModelGateway", "TokenCounts", "cost", "make_client"]
