"""The consent text shown to users; its version lives in settings."""

CONSENT_POINTS = [
    "Faces detects the faces in the photos you import and computes a face signature "
    "(a list of numbers) for each one, so that you can search your photos by face.",
    "Your photos, faces and signatures are visible only to you and, when they help "
    "you, to our support staff: they can see your e-mail address, what you imported "
    "and why an import failed, the names you gave people, and they can open small "
    "previews of your photos. Every record and preview they open is logged. They "
    "never see your face signatures.",
    "Faces only processes photos that you import or that your linked Instagram "
    "account holds. It never searches anyone else's library.",
    "You can delete all your face data at any time from Settings, and deleting your "
    "account deletes your photos too.",
]
