"""The Python ClientApp of bench/python-appio.ts: the instruction's arrays as a PyTorch state_dict
(when torch is importable) and back into the reply without copies, one value of each changed in
place as a training step would (every chunk of the reply is new)."""

from pollen import ArrayRecord, ClientApp, Message, RecordDict

app = ClientApp()


@app.train()
def train(msg, context):
    arrays = msg.content["arrays"]
    try:
        state = arrays.to_torch_state_dict()
    except ImportError:
        state = dict(zip(arrays.keys(), arrays.to_numpy_ndarrays()))
    for tensor in state.values():
        tensor.reshape(-1)[0] += 1
    return Message(RecordDict({"arrays": ArrayRecord(state)}), reply_to=msg)
