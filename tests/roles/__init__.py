"""Who may do what: every page, form post and API endpoint against every role.

Roles (issue #6, "Hardening"):

- anonymous: browses the catalog and the gallery, searches, reads the public API;
- user: signed in; requests generations and sees and controls only their own requests
  and jobs;
- curator: a user in the `curators` group (permission `catalog.curate_genre`); also
  reviews and changes genre labels;
- admin: staff and superuser (what `make run` creates); also re-indexes, manages the
  LoRA cache and users in the Django admin, and sees and controls every request and job.

`MATRIX` below is the decision, one row per case: the URL it exercises (its name in the
URLconf; `admin:*` for the Django admin, `media` for uploaded files), the HTTP method and
the outcome for each role. `test_every_url_has_a_role_decision` fails when a URL pattern
(or, for the API, an HTTP method of one) has no row, so a new endpoint cannot ship
without a decision here. Each case is run for each role with Django's test client:

- `ok`: really allowed: the expected 2xx (or the page's success redirect) and the effect
  (a generation created, a label changed, a job queued, ...). A read changes nothing.
- `denied` (API): 401/403 (403 once signed in); `login` (page): a redirect to the
  sign-in page; `admin-login`: the Django admin's redirect to its sign-in page; `403`:
  signed in without the permission; `404`: another user's private object; `405`: a
  method no role has. In every one of these the database (and the LoRA files) are
  unchanged.
- `-`: does not apply (an anonymous visitor owns nothing).

Another user's unfinished, failed or cancelled generation, and another user's job, are a
404, not a 403: ids are sequential, and a 403 would confirm that request N exists and
belongs to someone else (how busy the service is, who is generating). It is what
`generation_visible` and the jobs API's queryset already do: objects outside the
caller's visible set do not exist for them. Finished generations are the public gallery
(shown to anonymous visitors too), so their pages and API detail are open to all; only
their owner (or an admin) may cancel, retry or re-run. An image the safety checker
flagged is the exception: its page and API answer are open, but the image and its URL
reach only its owner and admins (others read "flagged by the safety checker"), and the
gallery leaves it out for everyone else. The image files follow the same rule (`media`
rows `gen-image-*`): generation images are served through a permission check, never as
plain media. A LoRA names the artist and style someone asked for, so the LoRA list, its
entries and downloads show others only LoRAs of finished, public results.
"""
