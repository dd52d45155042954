"""Amazon Rekognition behind the FaceEngine interface.

``client`` holds the boto3 client, the shared rate limit and the error
policy; ``images`` fits images to Rekognition's limits and reads its boxes;
``users`` keeps named people as Rekognition Users (the people hooks);
``engine`` is ``RekognitionEngine`` itself.
"""

from .engine import RekognitionEngine, sanitize_external_id
from .images import MAX_BYTES, storage_s3_key
from .users import user_id_for

__all__ = ["MAX_BYTES", "RekognitionEngine", "sanitize_external_id", "storage_s3_key", "user_id_for"]
