from django import forms

from catalog.services import ImageRefused, image_check

MAX_UPLOAD_BYTES = 10 * 1024 * 1024


class SearchForm(forms.Form):
    q = forms.CharField(
        label="Prompt",
        required=False,
        max_length=500,
        widget=forms.TextInput(
            attrs={
                "placeholder": "a harbour at dawn by Claude Monet, impressionism",
                "autofocus": True,
            }
        ),
    )
    k = forms.IntegerField(label="Results", min_value=1, max_value=200, initial=24, required=False)
    image = forms.ImageField(label="Or search by image", required=False)

    def clean_image(self):
        upload = self.cleaned_data.get("image")
        if not upload:
            return None
        if upload.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError("The image is larger than 10 MB.")
        try:
            return image_check(upload.read())
        except ImageRefused as exc:
            raise forms.ValidationError(str(exc)) from exc

    def clean(self):
        data = super().clean()
        empty = not (data.get("q") or "").strip() and not data.get("image")
        if empty and not self.errors:
            raise forms.ValidationError("Give a prompt or an image.")
        return data
