"""scikit-learn with studio: params and scores in one call.

    studio run --metric test/accuracy:max sklearn_train.py --trees 50
"""
import argparse

from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split

from studio.integrations.sklearn import log_estimator

parser = argparse.ArgumentParser()
parser.add_argument("--trees", type=int, default=20)
args = parser.parse_args()

X, y = load_iris(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
model = RandomForestClassifier(n_estimators=args.trees, random_state=0).fit(X_train, y_train)
print(log_estimator(model, X_test, y_test, scoring=["accuracy", "f1_macro"], cv=(X, y), folds=3))
