"""The HTTP contract of the recommendation endpoint (pydantic): what clients send and get back.

    POST /v1/recommendations  {"user_id": "42", "lat": 40.75, "lng": -73.98, "k": 10}
    -> {"user_id": "42", "model_version": "model-3f2a...", "strategy": "history", "items": [...]}

Errors are one JSON shape, ``ErrorBody``: {"error": ..., "field": "lat", "reason": "..."} with a 4xx
status (422 invalid field, 400 not JSON, 413 body too large, 422 location outside the served area).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class RecommendationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=128, description="the user asking")
    lat: float = Field(ge=-90.0, le=90.0, description="the user's latitude now, WGS84 degrees")
    lng: float = Field(ge=-180.0, le=180.0, description="the user's longitude now, WGS84 degrees")
    k: int = Field(default=10, ge=1, le=100, description="how many POIs")
    time_ms: int | None = Field(default=None, ge=0, description="request time, UTC epoch ms (default: now); "
                                                                 "only the user's events before it are used")


class Item(BaseModel):
    poi_id: str
    category: str
    lat: float
    lng: float
    distance_m: float = Field(description="haversine distance from the request's location")
    score: float = Field(description="log-probability of the POI (higher is better); items are sorted by it")
    semantic_id: list[int]


class RecommendationResponse(BaseModel):
    user_id: str
    model_version: str = Field(description="the checkpoint that served this request")
    strategy: Literal["history", "popular"] = Field(
        description="history: the model on the user's recent events; popular: no history yet, the "
                    "neighbourhood's popular POIs mixed with the model's prior for this location")
    history_len: int = Field(description="events of the user's history the model read")
    last_poi_id: str | None = Field(default=None, description="the latest event of that history")
    items: list[Item]


class ErrorBody(BaseModel):
    error: str = Field(description="what kind of error")
    field: str = Field(description="the offending field (body, lat, lng, k, user_id, location ...)")
    reason: str
    status: int = 422


class Health(BaseModel):
    status: Literal["ok", "not ready"]
    model_version: str | None = None
    detail: dict = Field(default_factory=dict)
