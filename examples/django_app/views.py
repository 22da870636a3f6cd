from django.http import JsonResponse
from django.views.decorators.http import require_GET, require_POST

from examples import welcome


@require_POST
def signup(request):
    jid = welcome.send_welcome.perform_async(request.POST["email"])
    return JsonResponse({"jid": jid}, status=202)


@require_GET
def welcomed(request):
    return JsonResponse(welcome.welcomed(), safe=False)
