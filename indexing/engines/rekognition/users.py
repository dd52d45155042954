"""Rekognition Users: a named person of ours is a User of the owner's collection.

The database is the truth about people. The hooks below (``FaceEngine``'s
people hooks) keep the Users in step with it; a failed call is logged, never
raised, and leaves the User behind the person until ``sync_people``
(``faces_people --users``) repairs it. Users serve one thing: the "This looks
like" hint of a selfie search when none of the matching faces is named
(``search_people_by_image``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.db.models import Q

from ...models import Person
from ..base import EngineError, NoFaceError, PersonMatch
from .client import InvalidParameter, ResourceMissing
from .images import api_bytes, decode

logger = logging.getLogger(__name__)

ASSOCIATE_BATCH = 100  # AssociateFaces / DisassociateFaces FaceIds max
MAX_USERS = 500  # SearchUsersByImage MaxUsers max


@dataclass
class Association:
    """Result of AssociateFaces / DisassociateFaces across batches."""

    face_ids: list[str] = field(default_factory=list)  # associated or disassociated
    failed: dict[str, list[str]] = field(default_factory=dict)  # face id -> reasons
    user_status: str = ""


@dataclass(frozen=True)
class UserMatch:
    user_id: str
    similarity: float  # 0-100


def user_id_for(person) -> str:
    """The Rekognition UserId standing for a Person (stable across renames)."""
    return f"person-{person.pk}"


def _threshold(value: float) -> float:
    return float(min(max(value, 0.0), 100.0))


class UsersMixin:
    """The Users API and the people hooks of ``RekognitionEngine``.

    Relies on the engine's ``_in_collection`` and ``name``.
    """

    # -- Users API ----------------------------------------------------------------

    def create_user(self, owner, user_id: str) -> None:
        """Create a Rekognition user (a person) in the owner's collection; idempotent."""
        self._in_collection(owner, "CreateUser", on_missing="retry", ok=("ConflictException",), UserId=user_id)

    def delete_user(self, owner, user_id: str) -> None:
        """Delete a user; its faces stay in the collection. A missing user is fine."""
        try:
            self._in_collection(owner, "DeleteUser", on_missing="empty", UserId=user_id)
        except ResourceMissing:
            pass

    def associate_faces(
        self, owner, user_id: str, face_ids: list[str], threshold: float | None = None
    ) -> Association:
        """Attach faces to a user, 100 per call. Faces Rekognition refuses are in ``failed``."""
        return self._associate("AssociateFaces", owner, user_id, face_ids, threshold)

    def disassociate_faces(self, owner, user_id: str, face_ids: list[str]) -> Association:
        """Detach faces from a user, 100 per call."""
        return self._associate("DisassociateFaces", owner, user_id, face_ids, None)

    def _associate(
        self, operation: str, owner, user_id: str, face_ids: list[str], threshold: float | None
    ) -> Association:
        result = Association()
        ids = list(dict.fromkeys(face_ids))
        done_key = "AssociatedFaces" if operation == "AssociateFaces" else "DisassociatedFaces"
        failed_key = (
            "UnsuccessfulFaceAssociations" if operation == "AssociateFaces" else "UnsuccessfulFaceDisassociations"
        )
        for start in range(0, len(ids), ASSOCIATE_BATCH):
            params = {"UserId": user_id, "FaceIds": ids[start : start + ASSOCIATE_BATCH]}
            if threshold is not None:
                params["UserMatchThreshold"] = float(threshold)
            try:
                response = self._in_collection(owner, operation, on_missing="empty", **params)
            except ResourceMissing as exc:
                raise EngineError(f"Rekognition user {user_id} does not exist.") from exc
            if response is None:
                raise EngineError("The face collection was missing and has been recreated; index the photos again.")
            result.face_ids += [item["FaceId"] for item in response.get(done_key, [])]
            for item in response.get(failed_key, []):
                result.failed[item.get("FaceId", "")] = list(item.get("Reasons", []))
            result.user_status = response.get("UserStatus", result.user_status)
        return result

    def search_users_by_image(self, owner, image: bytes, threshold: float, limit: int = 10) -> list[UserMatch]:
        """People (Rekognition users) whose faces look like the largest face of ``image``."""
        payload = api_bytes(image, decode(image))
        try:
            response = self._in_collection(
                owner,
                "SearchUsersByImage",
                on_missing="empty",
                Image={"Bytes": payload},
                UserMatchThreshold=_threshold(threshold),
                MaxUsers=max(1, min(int(limit), MAX_USERS)),
            )
        except InvalidParameter:
            raise NoFaceError("No face found in this photo.") from None
        if not response:
            return []
        return [
            UserMatch(user_id=item["User"]["UserId"], similarity=float(item.get("Similarity", 0.0)))
            for item in response.get("UserMatches", [])
        ]

    # -- people hooks ---------------------------------------------------------------

    def person_named(self, person) -> None:
        """Create the person's User (once), remember it on the row, and give it all their faces."""
        user_id = person.rekognition_user_id or user_id_for(person)
        if not person.rekognition_user_id:
            if not self._people_call("create_user", person.owner, user_id):
                return
            Person.objects.filter(pk=person.pk).update(rekognition_user_id=user_id)
            person.rekognition_user_id = user_id
        self._associate_chosen(person, list(self._face_ids(person)))

    def faces_moved(self, owner, moves: list[tuple[str, int | None]], target) -> None:
        """The faces leave their previous persons' Users and join the target's, if it is named."""
        previous = {person_id for _, person_id in moves if person_id}
        users = dict(Person.objects.filter(pk__in=previous).values_list("pk", "rekognition_user_id"))
        if target is not None:
            target.refresh_from_db(fields=["name", "is_me", "rekognition_user_id"])
        keep = target.rekognition_user_id if target is not None else ""
        leaving: dict[str, list[str]] = {}
        for face_id, person_id in moves:
            user_id = users.get(person_id, "")
            if user_id and user_id != keep:
                leaving.setdefault(user_id, []).append(face_id)
        for user_id, ids in leaving.items():
            self._people_call("disassociate_faces", owner, user_id, ids)
        if target is not None and (target.name or target.is_me):
            if target.rekognition_user_id:
                self._associate_chosen(target, [face_id for face_id, _ in moves])
            else:
                self.person_named(target)

    def person_removed(self, person) -> None:
        """Delete the person's User; the row forgets it once Rekognition did."""
        user_id = person.rekognition_user_id
        if user_id and self._people_call("delete_user", person.owner, user_id):
            if person.pk is not None:
                Person.objects.filter(pk=person.pk).update(rekognition_user_id="")
            person.rekognition_user_id = ""

    def sync_people(self, owner) -> int:
        """Give every named person (and "me") a User holding exactly their faces."""
        count = 0
        for person in Person.objects.filter(owner=owner).filter(~Q(name="") | Q(is_me=True)):
            self.person_named(person)
            count += 1
        return count

    def search_people_by_image(self, owner, image: bytes, threshold: float, limit: int = 1) -> list[PersonMatch]:
        """SearchUsersByImage, answered as the owner's visible named people with a User."""
        users = Person.objects.filter(owner=owner, hidden=False).exclude(name="").exclude(rekognition_user_id="")
        if not users.exists():
            return []
        try:
            found = self.search_users_by_image(owner, image, threshold, limit=limit)
        except EngineError as exc:
            logger.info("SearchUsersByImage failed: %s", exc)
            return []
        people = dict(
            users.filter(rekognition_user_id__in=[m.user_id for m in found]).values_list("rekognition_user_id", "pk")
        )
        return [PersonMatch(people[m.user_id], m.similarity) for m in found if m.user_id in people]

    def _face_ids(self, person):
        return person.faces.filter(engine=self.name).values_list("engine_face_id", flat=True)

    def _associate_chosen(self, person, face_ids: list[str]) -> None:
        if face_ids and person.rekognition_user_id:
            # The user chose these faces: no similarity bar (UserMatchThreshold 0).
            self._people_call("associate_faces", person.owner, person.rekognition_user_id, face_ids, 0.0)

    def _people_call(self, method: str, owner, *args) -> bool:
        """Call a Users API method; log (never raise) a failure and say whether it worked."""
        try:
            getattr(self, method)(owner, *args)
            return True
        except EngineError as exc:
            logger.warning("Rekognition %s for owner %s failed: %s", method, getattr(owner, "pk", owner), exc)
            return False
