from django import forms


class ConsentForm(forms.Form):
    agree = forms.BooleanField(
        required=True,
        label="I agree that Faces may detect and compare the faces in my photos as described above.",
    )


class DeleteAccountForm(forms.Form):
    confirm = forms.CharField(
        label='Type "delete my account" to confirm',
        help_text="This deletes your photos, faces, people and linked accounts. It cannot be undone.",
    )

    def clean_confirm(self) -> str:
        value = self.cleaned_data["confirm"].strip().lower()
        if value != "delete my account":
            raise forms.ValidationError('Please type "delete my account" exactly.')
        return value
