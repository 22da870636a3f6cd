from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from examples import welcome


# An API endpoint for scripts (the settings' curl): no session cookie rides along, so there is
# nothing for CSRF to protect and no token to send. A form in one of the site's own pages would
# keep the check and carry {% csrf_token %} instead.
@csrf_exempt
@require_POST
def signup(request):
    jid = welcome.send_welcome.perform_async(request.POST["email"])
    return JsonResponse({"jid": jid}, status=202)


@require_GET
def welcomed(request):
    return JsonResponse(welcome.welcomed(), safe=False)
