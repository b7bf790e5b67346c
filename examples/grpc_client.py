"""Classifies images with a keras_swin model served by TF Serving over gRPC.

    python examples/grpc_client.py --server localhost:8500 --model swin cat.jpg dog.png

Needs `tensorflow-serving-api` and `grpcio`, and a server started as in the README.
"""

import argparse

import grpc
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc


def build_request(model_name, encoded_images, signature="serving_bytes"):
    """The PredictRequest for a batch of encoded JPEG/PNG images."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(encoded_images, dtype=tf.string))
    return request


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("images", nargs="+")
    parser.add_argument("--server", default="localhost:8500")
    parser.add_argument("--model", default="swin")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()

    encoded = [open(path, "rb").read() for path in args.images]
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(args.server))
    response = stub.Predict(build_request(args.model, encoded), args.timeout)
    classes = tf.make_ndarray(response.outputs["classes"])
    scores = tf.make_ndarray(response.outputs["scores"])
    labels = tf.make_ndarray(response.outputs["labels"]) if "labels" in response.outputs else classes
    for path, row_labels, row_scores in zip(args.images, labels, scores):
        top = ", ".join(f"{label.decode() if isinstance(label, bytes) else label} {score:.3f}"
                        for label, score in zip(row_labels, row_scores))
        print(f"{path}: {top}")


if __name__ == "__main__":
    main()
