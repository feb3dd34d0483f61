// A Java agent that does nothing.
//
// LocalStack always starts DynamoDB Local with -javaagent:<its install dir>/ddb-local-loader-0.1.jar,
// an agent it normally downloads from GitHub (it only lifts DynamoDB Local's limit of 20 GSIs per
// table; template.yaml has far fewer). That host is out of reach here, and the JVM refuses to start
// without the jar it is told to load, so infra/localstack/install.sh builds this class into a jar
// of that name (manifest: Premain-Class: NoopAgent) with the JDK's own javac and jar.
public final class NoopAgent {
    private NoopAgent() {}

    public static void premain(String args) {}
}
