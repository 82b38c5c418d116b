from django import forms

from catalog.uploads import ImageRefused, image_upload_check


class SearchForm(forms.Form):
    q = forms.CharField(
        label="Prompt",
        required=False,
        max_length=500,
        widget=forms.TextInput(attrs={"autofocus": True, "type": "search"}),
    )
    k = forms.IntegerField(
        label="Results",
        min_value=1,
        max_value=200,
        initial=24,
        required=False,
        widget=forms.NumberInput(attrs={"placeholder": "24"}),
    )
    # A FileField, not an ImageField: `image_upload_check` (shared with the API) sniffs the
    # content and says why a file is refused (too large, too many pixels, not an image).
    image = forms.FileField(
        label="Search by image",
        required=False,
        widget=forms.ClearableFileInput(attrs={"accept": "image/*"}),
    )

    def __init__(
        self, *args, image_search: bool = True, image_cost: str = "", example: str = "", **kwargs
    ):
        super().__init__(*args, **kwargs)
        if example:
            self.fields["q"].widget.attrs["placeholder"] = example
        if image_search and image_cost:
            self.fields["image"].help_text = image_cost[0].upper() + image_cost[1:] + "."
        if not image_search:
            # Greyed out in the page only: a file posted anyway still reaches the search,
            # which refuses it with the same reason as the API (one rule, in selectors).
            self.fields["image"].widget.attrs["disabled"] = True
            self.fields["image"].help_text = (
                "The retrieval model in use has no image side: set MYTHRAGEN_EMBEDDER=blip2 "
                "to search by image."
            )

    @property
    def text_fields(self):
        return [self["q"], self["k"]]

    def clean_image(self):
        upload = self.cleaned_data.get("image")
        if not upload:
            return None
        try:
            return image_upload_check(upload)
        except ImageRefused as exc:
            raise forms.ValidationError(f"Image refused: {exc}.") from exc

    def clean(self):
        data = super().clean()
        empty = not (data.get("q") or "").strip() and not data.get("image")
        if empty and not self.errors:
            raise forms.ValidationError("Give a prompt or an image.")
        return data
