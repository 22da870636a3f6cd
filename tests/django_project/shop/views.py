from django.db import transaction
from django.http import JsonResponse
from django.views.decorators.http import require_POST

from forkq.contrib.django import enqueue_on_commit
from forkq.contrib.django.compat import TaskResultDoesNotExist, TaskResultStatus

from .models import Order
from .tasks import add, receipt


@require_POST
def create_order(request):
    with transaction.atomic():
        order = Order.objects.create(item=request.POST["item"])
        enqueue_on_commit(receipt, order.pk)
    return JsonResponse({"order": order.pk})


@require_POST
def send_receipt(request, order_id):
    result = receipt.enqueue(order_id)
    return JsonResponse({"id": result.id, "status": result.status})


def result(request, result_id):
    try:
        found = add.get_backend().get_result(result_id)
    except TaskResultDoesNotExist:
        return JsonResponse({"error": "no such result"}, status=404)
    value = found.return_value if found.status == TaskResultStatus.SUCCESSFUL else None
    return JsonResponse({"status": found.status, "value": value,
                         "errors": [e.exception_class_path for e in found.errors]})
