"""Fan-out predictions: every input through every named task, in shared batches."""

from fastapi import APIRouter, Request

from service.api.deps import SessionDep
from service.api.serving import predict_tasks
from service.schemas import FanOutRequest, FanOutResponse

router = APIRouter(tags=["predictions"])


@router.post("/predict", response_model=FanOutResponse, responses={404: {}, 409: {}})
async def create_fan_out_predictions(
    request: Request, session: SessionDep, fan_out_in: FanOutRequest
) -> FanOutResponse:
    """Run every input through every named task and return the predictions per task."""
    results = await predict_tasks(request.app, session, fan_out_in.tasks, fan_out_in.inputs)
    return FanOutResponse(results=results)
