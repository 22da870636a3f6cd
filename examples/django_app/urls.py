from django.urls import path, re_path

import forkq.web

from . import forkq_ui, views

urlpatterns = [
    path("signup", views.signup),
    path("welcomed", views.welcomed),
    re_path(r"^forkq(?:/.*)?$", forkq_ui.mount(forkq.web.app, "/forkq")),
]
