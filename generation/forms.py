"""The generation request form: widgets and types; `services.generation_params_check`
holds the rules (shared with the API and the command)."""

from django import forms

from catalog.models import Artist, Genre, Style
from generation import services


class GenerationForm(forms.Form):
    prompt = forms.CharField(
        max_length=services.MAX_PROMPT,
        widget=forms.Textarea(
            attrs={
                "rows": 2,
                "autofocus": True,
            }
        ),
    )
    negative_prompt = forms.CharField(
        required=False, max_length=services.MAX_PROMPT, label="Negative prompt"
    )
    seed = forms.IntegerField(
        required=False, min_value=0, max_value=services.SEED_MAX, help_text="blank: random"
    )
    steps = forms.IntegerField(min_value=1, max_value=services.STEPS_MAX)
    guidance = forms.FloatField(min_value=0, max_value=services.GUIDANCE_MAX, initial=7.5)
    width = forms.IntegerField(
        min_value=services.SIZE_MIN, max_value=services.SIZE_MAX, step_size=8
    )
    height = forms.IntegerField(
        min_value=services.SIZE_MIN, max_value=services.SIZE_MAX, step_size=8
    )
    sampler = forms.ChoiceField(initial="ddim")
    k = forms.IntegerField(min_value=1, max_value=services.K_MAX, label="Paintings per LoRA (k)")
    weight_artist_style = forms.FloatField(
        min_value=services.WEIGHT_MIN,
        max_value=services.WEIGHT_MAX,
        initial=0.6,
        label="Weight: artist + style LoRA",
        widget=forms.NumberInput(attrs={"step": "0.05"}),
    )
    weight_genre_style = forms.FloatField(
        min_value=services.WEIGHT_MIN,
        max_value=services.WEIGHT_MAX,
        initial=0.4,
        label="Weight: genre + style LoRA",
        widget=forms.NumberInput(attrs={"step": "0.05"}),
    )
    with_baseline = forms.BooleanField(
        required=False, initial=True, label="Also render the prompt-only baseline"
    )
    # The sub-collection to retrieve from (catalog filters).
    artist = forms.ModelChoiceField(
        Artist.objects.all(), to_field_name="slug", required=False, label="Only artist"
    )
    style = forms.ModelChoiceField(
        Style.objects.all(), to_field_name="name", required=False, label="Only style"
    )
    genre = forms.ModelChoiceField(
        Genre.objects.all(), to_field_name="name", required=False, label="Only genre"
    )

    allow_unknown_names = forms.BooleanField(
        required=False,
        label="Generate anyway: the artist + style LoRA is trained without that artist",
    )

    FILTER_FIELDS = {"artist": "slug", "style": "name", "genre": "name"}

    def __init__(self, *args, example: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["sampler"].choices = [(s, s) for s in services.samplers()]
        # One source of defaults for the form, the API and the `generate` command.
        for name, value in services.generation_defaults().items():
            if name in self.fields:
                self.fields[name].initial = value
        if example:
            self.fields["prompt"].widget.attrs["placeholder"] = example

    PARAM_FIELDS = ("seed", "steps", "guidance", "width", "height", "sampler", "k")
    PARAM_FIELDS += ("weight_artist_style", "weight_genre_style")

    @property
    def param_fields(self):
        return [self[name] for name in self.PARAM_FIELDS]

    @property
    def filter_fields(self):
        return [self[name] for name in self.FILTER_FIELDS]

    def to_params(self) -> services.GenerationParams:
        data = self.cleaned_data
        filters = {
            name: getattr(data[name], attr)
            for name, attr in self.FILTER_FIELDS.items()
            if data.get(name)
        }
        return services.GenerationParams(
            prompt=data["prompt"],
            negative_prompt=data.get("negative_prompt") or "",
            seed=data.get("seed"),
            steps=data["steps"],
            guidance=data["guidance"],
            width=data["width"],
            height=data["height"],
            sampler=data["sampler"],
            k=data["k"],
            weight_artist_style=data["weight_artist_style"],
            weight_genre_style=data["weight_genre_style"],
            filters=filters,
            with_baseline=bool(data.get("with_baseline")),
            allow_unknown_names=bool(data.get("allow_unknown_names")),
        )

    def add_service_errors(self, errors: dict) -> None:
        """Attach a service's field errors ("filters.style" -> the style field)."""
        for key, messages in errors.items():
            name = key.split(".", 1)[1] if key.startswith("filters.") else key
            target = name if name in self.fields else None
            for message in messages:
                self.add_error(target, message)
