from django import forms
from django.conf import settings


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """A file field that takes many files (Django's documented recipe)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": "image/*,.heic,.heif", "multiple": True}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        single = super().clean
        files = [single(item, initial) for item in data] if isinstance(data, (list, tuple)) else [single(data, initial)]
        if len(files) > settings.DATA_UPLOAD_MAX_NUMBER_FILES:
            raise forms.ValidationError(
                f"Please upload at most {settings.DATA_UPLOAD_MAX_NUMBER_FILES} photos at a time."
            )
        return files


class PhotoUploadForm(forms.Form):
    # An empty file is skipped by the upload view with its name; it does not refuse the batch.
    photos = MultipleFileField(label="Photos", allow_empty_file=True)


class ExportUploadForm(forms.Form):
    archive = forms.FileField(
        label="Instagram export ZIP",
        widget=forms.ClearableFileInput(attrs={"accept": ".zip,application/zip"}),
        help_text='From Instagram: Settings → Your activity → Download your information, format "JSON".',
    )
